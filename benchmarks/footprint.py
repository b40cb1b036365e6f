"""Resident memory of every process of the local stack, at rest and after 100 questions.

    .venv/bin/python -m benchmarks.footprint

Starts the real local stack on its own ports and state directory (Kafka, Postgres, the ingest,
embedder, guardrails, rag and finetune workers, the gateway and the model server, each as
``customllm up`` starts it), publishes a small corpus (SQuAD paragraphs, public) through
``docs.changes`` and waits until it is indexed. Then it measures each process's memory, its
children included (Postgres is the postmaster and its backends):

- **at rest**: the stack up, the corpus indexed, no question asked yet, after an idle pause;
- **after N questions** (100 by default): real questions through the gateway's
  ``POST /v1/chat/completions`` (API key → rag.requests → guardrails → rag → guardrails →
  reply), no cache, so every one retrieves and generates.

RSS is what the issue's targets are written in; it counts shared pages once per process, so the
stack's total RSS over-counts (Postgres' shared buffers, the same wheels' code); PSS (shared
pages split between their users) is printed beside it and is the honest sum. Each process is
also checked for torch at runtime (a ``libtorch`` mapping in ``/proc/<pid>/maps``).

**Baseline, in the same run**: the lean processes (gateway, ingest, finetune at rest) against
the same service modules imported in a fresh interpreter *with* torch, transformers and peft,
the way the gateway was when it hosted the model server and the finetune worker when it
imported its trainer at start; both measured the same way, one after the other, in this run.
The figures the issue measured on main before the work (10.7 GB at rest after the demo) are
printed for reference only: they are another run on another day.

Writes docs/benchmarks/footprint.json, .md and .png and prints a table. Needs psutil.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from benchmarks.harness import configure_environment, running_stack, wait_http

PORTS = {"CUSTOMLLM_KAFKA_PORT": "19692", "CUSTOMLLM_KAFKA_CONTROLLER_PORT": "19693",
         "CUSTOMLLM_POSTGRES_PORT": "15833", "CUSTOMLLM_GATEWAY_PORT": "18781",
         "CUSTOMLLM_MODEL_SERVER_PORT": "18782"}
STREAM_WORKERS = {"ingest": 1, "embedder": 1, "guardrails": 1, "rag": 1, "finetune": 1}
TARGETS_MB = {"gateway": 150, "ingest": 150}
TOTAL_TARGET_MB = 6 * 1024
# Issue #12, measured on main before this work ("at rest after the demo"), for reference.
ISSUE_BEFORE_MB = {"finetune": 2600, "embedder": 2000, "rag": 2000, "guardrails": 1600,
                   "gateway": 1600, "kafka": 700, "total": 10700}
# A finetune-like process around one tiny LoRA job (2 steps, the integration test's
# hyperparameters), RSS MB; measured once beside this benchmark, not by it (a job takes the
# stack's CPU for minutes).
TRAIN_PROBE_MB = {"lazy": 49, "after_job": 971, "after_trim": 939}
# The guardrails' loads one after the other in a fresh interpreter, RSS MB (same occasion).
GUARDRAILS_PROBE_MB = {"python": 14, "torch": 539, "minilm": 961, "presidio_spacy": 1276,
                       "profanity_check": 1285}
BASELINES = {  # label → (service modules as started today, what the old shape added)
    "gateway": (["services.gateway.app"], ["torch", "transformers"]),
    "ingest": (["services.ingest.app"], ["torch", "transformers"]),
    "finetune": (["services.finetune.app"], ["torch", "transformers", "peft"]),
}
SQUAD = Path(__file__).resolve().parents[2] / "shared/datasets/squad_v2_dev_5articles.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", "-n", type=int, default=100)
    parser.add_argument("--docs", type=int, default=40, help="SQuAD paragraphs to publish")
    parser.add_argument("--squad", type=Path, default=SQUAD, help="SQuAD v2 JSON")
    parser.add_argument("--max-tokens", type=int, default=32, help="per answer")
    parser.add_argument("--concurrency", type=int, default=2, help="questions in flight")
    parser.add_argument("--rest-s", type=float, default=15, help="idle pause before 'at rest'")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args()
    state = configure_environment()
    os.environ.update(PORTS)
    os.environ["CUSTOMLLM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{PORTS['CUSTOMLLM_KAFKA_PORT']}"
    started = time.perf_counter()
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.footprint", *sys.argv[1:]]),
        "config": vars(args) | {"squad": str(args.squad), "out": str(args.out)},
        "machine": _machine()}
    from services.common.config import get_settings

    # The broker's heap as `customllm up` sets it (the other benchmarks give it 1 GB).
    with running_stack(state, STREAM_WORKERS, kafka_heap=get_settings().kafka_heap):
        results.update(run(state, args))
    results["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "footprint.json").write_text(json.dumps(results, indent=2))
    write_chart(results, args.out / "footprint.png")
    (args.out / "footprint.md").write_text(markdown(results))
    print(table(results))


# --- the run -------------------------------------------------------------------------------------

def run(state: Path, args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import query_runs as q
    from services.common import identity
    from services.common.config import get_settings
    from services.gateway.config import gateway_settings
    from services.model_server.config import model_server_settings
    from services.stack import services as procs

    settings = get_settings()
    key = identity.add_key(identity.key_file_path(settings), "bench-footprint",
                           q.PRINCIPAL)
    t0 = time.perf_counter()
    procs.start(state, "gateway")
    procs.start(state, procs.MODEL_SERVER)
    gateway = f"http://127.0.0.1:{gateway_settings().gateway_port}"
    wait_http(f"{gateway}/healthz")
    # The model server answers /health once its model is loaded.
    wait_http(f"http://127.0.0.1:{model_server_settings().model_server_port}/health")
    print(f"gateway and model server up in {time.perf_counter() - t0:.0f} s", flush=True)

    docs, questions = q.squad_corpus(args.squad)
    docs = docs[:args.docs]
    ids = {d.doc_id for d in docs}
    asked = [x for x in questions if x.doc_id in ids and x.answerable]
    random.Random(20261202).shuffle(asked)
    corpus = q.publish_and_wait(docs)
    print(f"corpus: {corpus['docs']} docs, {corpus['chunks']} chunks indexed in "
          f"{corpus['publish_to_indexed_s']} s", flush=True)
    time.sleep(args.rest_s)
    at_rest = measure(state)
    print(f"at rest: {at_rest['total']['rss_mb']:.0f} MB RSS", flush=True)

    texts = [x.text for x in asked]
    while len(texts) < args.questions:  # a small corpus: reuse, the cache is off anyway
        texts += texts
    answers = ask_all(gateway, key, texts[:args.questions], args)
    time.sleep(3)
    after = measure(state)
    print(f"after {args.questions} questions: {after['total']['rss_mb']:.0f} MB RSS",
          flush=True)
    baseline = {name: measure_imports(state, name, modules, extra)
                for name, (modules, extra) in BASELINES.items()}
    return {"corpus": corpus, "at_rest": at_rest, "after_questions": after,
            "questions": answers, "baseline_imports": baseline}



def ask_all(gateway: str, key: str, texts: list[str], args: argparse.Namespace
            ) -> dict[str, Any]:
    """The questions through the gateway, ``concurrency`` at a time."""
    lock = threading.Lock()
    pending = list(enumerate(texts))
    outcomes: dict[str, int] = {}
    latencies: list[float] = []
    started = time.perf_counter()

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                i, question = pending.pop(0)
            body = json.dumps({"model": "customllm", "max_tokens": args.max_tokens,
                               "use_cache": False,
                               "messages": [{"role": "user", "content": question}]}).encode()
            request = urllib.request.Request(
                f"{gateway}/v1/chat/completions", data=body, method="POST",
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310
                    response.read()
                    outcome = str(response.status)
            except urllib.error.HTTPError as exc:
                outcome = str(exc.code)
            except (urllib.error.URLError, OSError) as exc:
                outcome = type(exc).__name__
            with lock:
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                latencies.append(time.perf_counter() - t)
                done = len(latencies)
            if done % 20 == 0:
                print(f"  questions: {done}/{len(texts)} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {"n": len(texts), "outcomes": outcomes, "wall_s": round(time.perf_counter()
                                                                   - started, 1),
            "p50_s": round(latencies[len(latencies) // 2], 2) if latencies else None}


# --- measuring -----------------------------------------------------------------------------------

def processes(state: Path) -> dict[str, int]:
    from services.stack import kafka, postgres
    from services.stack import services as procs

    found = dict(procs.running(state))
    for name, pid in (("kafka", kafka.pid(state)), ("postgres", postgres.pid(state))):
        if pid is not None:
            found[name] = pid
    return {name.removesuffix("-0"): pid for name, pid in found.items()}


def footprint(pid: int) -> dict[str, Any]:
    """RSS and PSS of a process and all its children, in MB, and whether torch is mapped."""
    root = psutil.Process(pid)
    rss = pss = 0
    torch = False
    count = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
            rss, pss, count = rss + info.rss, pss + info.pss, count + 1
            torch = torch or _maps_torch(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return {"rss_mb": round(rss / 2**20, 1), "pss_mb": round(pss / 2**20, 1),
            "processes": count, "torch": torch}


def _maps_torch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def measure(state: Path) -> dict[str, Any]:
    figures = {name: footprint(pid) for name, pid in sorted(processes(state).items())}
    figures["total"] = {"rss_mb": round(sum(f["rss_mb"] for f in figures.values()), 1),
                        "pss_mb": round(sum(f["pss_mb"] for f in figures.values()), 1),
                        "processes": sum(f["processes"] for f in figures.values()),
                        "torch": False}
    return figures


def measure_imports(state: Path, name: str, modules: list[str], extra: list[str]
                    ) -> dict[str, Any]:
    """The service's modules imported in a fresh interpreter, as it starts today and with the
    heavy libraries the old shape imported; the same measurement for both, one after the
    other."""
    out = {}
    for label, imports in (("lean", modules), ("with_torch", [*extra, *modules])):
        out[label] = _import_footprint(state, name, imports)
    return out


_PROBE = """
import importlib, json, sys, time
for m in sys.argv[1:]:
    importlib.import_module(m)
heavy = sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules)
print(json.dumps(heavy), flush=True)
time.sleep(120)
"""


def _import_footprint(state: Path, name: str, imports: list[str]) -> dict[str, Any]:
    from services.stack import security

    env = {**os.environ, "CUSTOMLLM_STATE_DIR": str(state), **security.service_env(state, name)}
    child = subprocess.Popen([sys.executable, "-c", _PROBE, *imports], env=env,  # noqa: S603
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = child.stdout.readline() if child.stdout else ""
        time.sleep(2)
        figures = footprint(child.pid)
        figures["heavy_modules"] = json.loads(line) if line.strip() else None
        figures["imports"] = imports
        return figures
    finally:
        child.terminate()
        child.wait(timeout=30)


def _machine() -> dict[str, Any]:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


# --- report --------------------------------------------------------------------------------------

def _verdict(name: str, mb: float) -> str:
    target = TARGETS_MB.get(name)
    if name == "total":
        target = TOTAL_TARGET_MB
    if target is None:
        return ""
    return f"≤ {target} {'met' if mb <= target else 'MISSED'}"


def rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    rest, after = results["at_rest"], results["after_questions"]
    names = [n for n in rest if n != "total"] + ["total"]
    out = []
    for name in names:
        r, a = rest[name], after.get(name, {})
        before = ISSUE_BEFORE_MB.get(name)
        out.append((name, f"{r['rss_mb']:.0f}", f"{r['pss_mb']:.0f}",
                    f"{a.get('rss_mb', 0):.0f}", f"{a.get('pss_mb', 0):.0f}",
                    "yes" if a.get("torch") or r["torch"] else "no",
                    _verdict(name, r["rss_mb"]),
                    f"{before}" if before else ""))
    return out


HEADER = ("process", "rest RSS", "rest PSS", "after RSS", "after PSS", "torch",
          "target (rest RSS)", "issue: before")


def table(results: dict[str, Any]) -> str:
    n = results["questions"]["n"]
    lines = [f"\n== footprint: MB per process (children included), at rest and after {n} "
             f"questions ==", "  ".join(f"{h:>17}" for h in HEADER)]
    lines += ["  ".join(f"{c:>17}" for c in row) for row in rows(results)]
    q = results["questions"]
    for label, key in (("at rest", "at_rest"), (f"after {n} questions", "after_questions")):
        figures = results[key]
        lines.append(f"total {label} without the model server (plain `customllm up`): "
                     f"{figures['total']['rss_mb'] - _rss(figures, 'model_server'):.0f} MB RSS")
    lines.append(f"questions: {q['n']} through the gateway, outcomes {q['outcomes']}, "
                 f"{q['wall_s']} s, p50 {q['p50_s']} s")
    lines.append("\nbaseline, same run: the service's modules imported in a fresh interpreter, "
                 "as started today vs with the heavy libraries the old shape imported (RSS MB)")
    for name, b in results["baseline_imports"].items():
        lean, heavy = b["lean"], b["with_torch"]
        added = "+".join(heavy["imports"][:-1])
        lines.append(f"  {name:10s} lean {lean['rss_mb']:7.0f} (heavy modules "
                     f"{lean['heavy_modules']})   with {added} "
                     f"{heavy['rss_mb']:7.0f}   saved {heavy['rss_mb'] - lean['rss_mb']:6.0f}")
    lines.append(f"\nwall time {results['wall_s']} s; machine {results['machine']}")
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    n = results["questions"]["n"]
    q = results["questions"]
    rest_total = results["at_rest"]["total"]
    after_total = results["after_questions"]["total"]
    md = [
        "# Footprint: resident memory per process",
        "",
        "```bash",
        f".venv/bin/{results['command'].strip()}",
        "```",
        "",
        f"Measured {results['machine']['at']} on {results['machine']['cpus']} CPUs "
        f"({results['machine']['memory_gb']} GB, load average "
        f"{results['machine']['load_avg_1m']} at the start, other work sharing the machine). "
        f"The real local stack on its own ports; {results['corpus']['docs']} SQuAD paragraphs "
        f"({results['corpus']['chunks']} chunks) published and indexed; **at rest** = indexed, "
        f"no question yet, after an idle pause; **after {n} questions** = {n} questions through "
        f"the gateway (`POST /v1/chat/completions`, no cache, max_tokens "
        f"{results['config']['max_tokens']}, {results['config']['concurrency']} in flight; "
        f"outcomes {q['outcomes']}, {q['wall_s']} s).",
        "",
        "MB per process, children included (Postgres = postmaster + backends). RSS counts shared "
        "pages once per process, so the RSS total over-counts; PSS splits shared pages between "
        "their users and is the honest sum. *torch*: a `libtorch` mapping in the process at "
        "runtime. *issue: before*: issue #12's figures on main before this work (at rest after "
        "the demo) — another run, for reference only.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    md += ["| " + " | ".join(row) + " |" for row in rows(results)]
    md += [
        "",
        f"Whole stack at rest: **{rest_total['rss_mb'] / 1024:.2f} GB RSS** "
        f"({rest_total['pss_mb'] / 1024:.2f} GB PSS); after {n} questions "
        f"{after_total['rss_mb'] / 1024:.2f} GB RSS ({after_total['pss_mb'] / 1024:.2f} GB PSS). "
        f"Target ≤ 6 GB at rest (GB = 1024 MB). Without the model server, which `customllm "
        f"up` starts only with `--model-server`: "
        f"{(rest_total['rss_mb'] - _rss(results['at_rest'], 'model_server')) / 1024:.2f} GB "
        f"RSS at rest, "
        f"{(after_total['rss_mb'] - _rss(results['after_questions'], 'model_server')) / 1024:.2f}"
        f" GB after the questions.",
        "",
        "## Baseline in the same run",
        "",
        "The service's modules imported in a fresh interpreter exactly as the process starts "
        "today, against the same imports plus the heavy libraries the old shape loaded at start "
        "(the gateway hosted the TGI-compatible model server and imported torch and "
        "transformers; the finetune worker with its trainer imported torch, transformers and "
        "peft). Same measurement, one after the other, in this run. RSS MB:",
        "",
        "| process | lean (as started today) | heavy modules loaded | with the old imports "
        "| saved |",
        "|---|---|---|---|---|",
    ]
    for name, b in results["baseline_imports"].items():
        lean, heavy = b["lean"], b["with_torch"]
        loaded = ", ".join(lean["heavy_modules"] or []) or "none"
        added = "+".join(heavy["imports"][:-1])
        md.append(f"| {name} | {lean['rss_mb']:.0f} | {loaded} | {heavy['rss_mb']:.0f} "
                  f"(+{added}) | {heavy['rss_mb'] - lean['rss_mb']:.0f} |")
    md += ["", "![footprint](footprint.png)", "", *findings(results), ""]
    return "\n".join(md)


def _rss(figures: dict[str, Any], name: str) -> float:
    return figures.get(name, {}).get("rss_mb", 0.0)


def findings(results: dict[str, Any]) -> list[str]:
    """What the figures say, from this run's numbers."""
    rest, after = results["at_rest"], results["after_questions"]

    def mb(name: str, where: dict[str, Any] = rest) -> float:
        return where.get(name, {}).get("rss_mb", 0.0)

    torch_cost = sum(b["with_torch"]["rss_mb"] - b["lean"]["rss_mb"]
                     for n, b in results["baseline_imports"].items() if n != "finetune")
    torch_cost /= max(1, len(results["baseline_imports"]) - 1)
    g = GUARDRAILS_PROBE_MB
    with_torch = [n for n, f in rest.items() if f.get("torch") or after.get(n, {}).get("torch")]
    lean = [n for n in rest if n != "total" and n not in with_torch]
    out = [
        "## Findings",
        "",
        f"- **torch at runtime** in: {', '.join(with_torch)}; never in: {', '.join(lean)} "
        f"(a `libtorch` mapping, checked at rest and after the questions). Importing torch and "
        f"transformers alone costs ≈ {torch_cost:.0f} MB RSS per process (baseline above).",
        f"- **The local model is held twice** when the model server runs: the rag worker "
        f"generates in process ({mb('rag'):.0f} MB at rest, {mb('rag', after):.0f} MB after "
        f"the questions) and the model server holds its own copy ({mb('model_server'):.0f} "
        f"MB) that the default query path never calls. Pointing the rag worker at the model "
        f"server (`CUSTOMLLM_GENERATION_BACKEND=tgi`, `CUSTOMLLM_TGI_URL`) when both run, or "
        f"not starting the model server by default, saves one copy; that is a launcher "
        f"default (services/cli/stack_cmds.py), not changed here.",
        f"- **MiniLM and torch three times**: the embedder ({mb('embedder'):.0f} MB), the "
        f"guardrails ({mb('guardrails'):.0f} MB: MiniLM for the injection head and grounding, "
        f"plus Presidio with spaCy `en_core_web_md`) and the rag worker (question embedding) "
        f"each load torch and the same embedding model. Loaded one after the other in a "
        f"fresh interpreter (measured beside this run): Python {g['python']} MB, + torch "
        f"{g['torch']}, + MiniLM through sentence-transformers {g['minilm']}, + Presidio "
        f"with spaCy {g['presidio_spacy']}, + profanity-check {g['profanity_check']} MB: torch, "
        f"sentence-transformers and MiniLM together are ~{g['minilm'] - g['python']} MB in "
        f"each of the three processes, the MiniLM weights ~90 MB of that. Each needs "
        f"embeddings; one shared copy would mean an embedding service (a network hop per "
        f"question), so that is a design decision, not a safe fix. The guardrails load "
        f"nothing they do not use at rest; the LLM judge (off in the shipped policies, "
        f"`judge: false`) would load a third copy of the local model into the guardrails "
        f"process if a policy turned it on with the default `local` backend.",
        f"- **The finetune worker at rest** holds {mb('finetune'):.0f} MB and no torch: torch, "
        f"transformers and peft are imported inside the functions that train, evaluate and "
        f"check the hardware (tests/unit/finetune/test_lean_imports.py). After a job it keeps "
        f"them (a process cannot unload torch): issue #12's 2.6 GB was measured after the "
        f"demo's training job. Measured separately (a 2-step LoRA job through "
        f"`train_adapter` in a fresh interpreter): {TRAIN_PROBE_MB['lazy']} MB after the "
        f"lazy imports, {TRAIN_PROBE_MB['after_job']} MB after the job, "
        f"{TRAIN_PROBE_MB['after_trim']} MB after `gc.collect()` and `malloc_trim(0)`: the "
        f"model is freed, the libraries stay. Only running each job in a child process would "
        f"give that memory back when the job ends; not done here (the executor's lease "
        f"heartbeat, cancel and progress events would have to cross a process boundary).",
        "- **Growth over the questions** (RSS, after − at rest): "
        + ", ".join(f"{n} {mb(n, after) - mb(n):+.0f}" for n in rest if n != "total")
        + " MB. The rag worker grows most (its in-process generation; where the memory goes "
        "was not investigated further); Kafka's JVM touches more of its fixed heap "
        "(`-Xms` = `-Xmx` = `CUSTOMLLM_KAFKA_HEAP`) as topics fill.",
        "",
        "Raw figures: [`footprint.json`](footprint.json).",
    ]
    return out


def write_chart(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rest, after = results["at_rest"], results["after_questions"]
    names = [n for n in rest if n != "total"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8),
                                      gridspec_kw={"width_ratios": [3, 1.3]})
    x = range(len(names))
    width = 0.28
    left.bar([i - width for i in x], [rest[n]["rss_mb"] for n in names], width,
             label="at rest", color="#4c72b0")
    left.bar(list(x), [after.get(n, {}).get("rss_mb", 0) for n in names],
             width, label=f"after {results['questions']['n']} questions", color="#dd8452")
    baseline = results["baseline_imports"]
    shown = [i for i, n in enumerate(names) if n in baseline]
    left.bar([i + width for i in shown],
             [baseline[names[i]]["with_torch"]["rss_mb"] for i in shown], width,
             color="white", edgecolor="#555", hatch="//",
             label="baseline, this run: its modules + torch imports")
    left.bar([i + width for i in shown], [baseline[names[i]]["lean"]["rss_mb"] for i in shown],
             width, color="#999", label="  the same modules, lean")
    for i, name in enumerate(names):
        if name in TARGETS_MB:
            left.hlines(TARGETS_MB[name], i - 0.45, i + 0.45, colors="red", linestyles="--")
        if name in ISSUE_BEFORE_MB:
            left.plot(i, ISSUE_BEFORE_MB[name], marker="_", color="grey", markersize=22,
                      mew=2)
    left.plot([], [], "r--", label="target (gateway, ingest ≤ 150 MB)")
    left.plot([], [], marker="_", color="grey", ls="", markersize=14, mew=2,
              label="issue #12: before (other run)")
    left.set_xticks(list(x), names, rotation=30)
    left.set_ylabel("RSS, MB (children included)")
    left.set_title("Per process")
    left.legend(fontsize=8)
    bars = {"rest RSS": rest["total"]["rss_mb"], "rest PSS": rest["total"]["pss_mb"],
            "after RSS": after["total"]["rss_mb"], "after PSS": after["total"]["pss_mb"],
            "before (issue)": ISSUE_BEFORE_MB["total"]}
    right.bar(list(bars), [v / 1024 for v in bars.values()],
              color=["#4c72b0", "#8fa8d6", "#dd8452", "#f0b48a", "grey"])
    right.axhline(TOTAL_TARGET_MB / 1024, color="red", ls="--", label="target ≤ 6 GB")
    right.set_ylabel("GB")
    right.set_title("Whole stack")
    right.tick_params(axis="x", rotation=30)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
