"""Rule and heuristic scoring for prompt injection, shared by the input stage (questions) and
the ingest scan (document chunks: indirect injection).

Rules are regular expressions with a weight each, grouped by the attack they recognise:
instruction override, jailbreak personas, system-prompt extraction, delimiter / role
injection, exfiltration, and "say exactly X" hijacks, in English and (for the core override
and persona phrases) German, French, Spanish, Italian, Portuguese and Dutch. Several weak
signals add up: the score is a noisy-OR of the weights of the rules that matched
(``1 - Π(1 - w)``), so one strong rule blocks on its own, and two weak ones together do.

Every rule runs on several views of the text (see ``services.common.text_normalize.views``):
the text, its skeleton (homoglyphs, leetspeak, spacing undone) and decoded payloads (base64,
hex, url-encoding, rot13). A rule that matches only in a disguised view adds the
``obfuscation`` signal too: hiding an instruction is itself evidence of intent.

The patterns are meant to be general, not a list of one data set's sentences; each needs a
verb of override *and* an object (instructions, rules, prompt...), so "how do I ignore
whitespace in git diff?" does not trigger.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from services.common.regex_prefilter import (
    literal_finder,
    literals_present,
    may_match,
    required_literals,
)
from services.common.text_normalize import spaced_runs, views


@dataclass(frozen=True)
class Rule:
    name: str
    category: str
    weight: float
    pattern: re.Pattern[str]
    # Words one of which every match holds (``regex_prefilter``): most texts hold none of a
    # rule's, and looking for them is far cheaper than the search.
    required: tuple[frozenset[str], ...] = ()


@dataclass(frozen=True)
class InjectionScore:
    score: float
    rules: list[str]
    views: dict[str, list[str]] = field(default_factory=dict)


def _r(name: str, category: str, weight: float, pattern: str) -> Rule:
    compiled = re.compile(pattern, re.IGNORECASE | re.DOTALL)
    return Rule(name, category, weight, compiled, required_literals(compiled))


# Pieces reused across patterns (on folded text: lowercase, accents removed).
_W = r"(?:\W+\w+){0,3}?\W+"  # up to three filler words between two parts
_PRIOR = (r"(?:previous|prior|above|earlier|preceding|foregoing|former|initial|original|"
          r"preset|pre-?set|system|default|existing|given|old|your|my|the|all|any|these|those|"
          r"every)")
_OBJ = (r"(?:instructions?|prompts?|rules?|directions?|directives?|guidelines?|commands?|"
        r"orders?|tasks?|assignments?|context|constraints?|restrictions?|programming|"
        r"messages?|information|input|text|conversation|guardrails?|policies|policy|"
        r"safeguards?|filters?|documents?|articles?|sources?|knowledge\W+base)")
_OVERRIDE_VERB = (r"(?:ignore|ignoring|disregard|disregarding|forget|forgetting|skip|override|"
                  r"overrule|bypass|neglect|abandon|discard|drop|dismiss|set aside|throw away|"
                  r"stop following|do not follow|don'?t follow|no longer follow)")

RULES: tuple[Rule, ...] = (
    # --- instruction override -------------------------------------------------------------
    _r("override.en", "override", 0.9,
       rf"\b{_OVERRIDE_VERB}\b(?:\W+\w+){{0,4}}?\W+{_PRIOR}\W+(?:\w+\W+){{0,2}}?{_OBJ}\b"),
    _r("override.everything_above.en", "override", 0.85,
       r"\b(?:ignore|disregard|forget)\W+(?:about\W+)?(?:everything|all|anything|what)\b"
       r"(?:\W+\w+){0,3}?\W+(?:above|before|prior|previously|said|told|earlier|so far|"
       r"until now)\b"),
    _r("override.the_above.en", "override", 0.8,
       r"\b(?:ignore|disregard|forget)\W+(?:all\W+)?(?:of\W+)?(?:the\W+)?(?:above|previous|"
       r"prior|preceding|foregoing)\b(?!\W+(?:\w+\W+)?(?:version|release|commit|step|"
       r"section|chapter|line|page)s?\b)"),
    _r("override.everything", "override", 0.7,
       r"\b(?:ignore|disregard|forget)\W+(?:about\W+)?(?:everything|all\W+(?:of\W+)?that|"
       r"all\W+your\W+(?:thoughts|knowledge|training))\b"),
    _r("override.change_instructions", "override", 0.7,
       r"\b(?:change|update|replace|modify|rewrite|reset)\W+(?:all\W+)?(?:your|the)\W+"
       r"(?:\w+\W+)?(?:instructions|rules|prompt|programming|guidelines|directives)\b|"
       r"\byour\W+(?:new\W+)?instructions\W+are\W+(?:now|as\W+follows)\b|"
       r"\bleave\W+(?:\w+\W+){0,3}?(?:previous|prior|earlier)\W+(?:\w+\W+)?behind\b"),
    _r("override.rag_sources", "override", 0.55,
       r"\bdo\W+not\W+(?:look\W+(?:in|at)|use|consult|read|rely\W+on|consider)\W+(?:\w+\W+)?"
       r"(?:documents?|articles?|context|sources?|provided)\b|\bnot\W+(?:by|from|using|on)\W+"
       r"the\W+(?:articles?|documents?|context|sources?)\b|\bdo\W+not\W+answer\W+(?:this|the)"
       r"\W+question\b"),
    _r("override.irrelevant.en", "override", 0.7,
       rf"\b{_PRIOR}\W+(?:\w+\W+){{0,2}}?{_OBJ}\W+(?:are|is|were|was)\W+(?:now\W+)?"
       r"(?:irrelevant|void|null|obsolete|cancell?ed|no longer valid|outdated|wrong)\b"),
    _r("override.de", "override", 0.9,
       r"\b(?:ignorier\w*|vergiss|vergessen|vergesst|missacht\w*|uberg\w*|verwirf|verwerfen"
       r"|beachte\w*\W+nicht|nicht\W+beachten)\b(?:\W+\w+){0,5}?\W+"
       r"(?:anweisung\w*|anordnung\w*|instruktion\w*|befehl\w*|aufgabe\w*|informationen|"
       r"regeln|vorgaben|richtlinien|auftrag\w*|prompt\w*|alles|all das|alle)\b|"
       r"\b(?:obigen|vorherigen|bisherigen|vorigen|vorangegangenen)\W+(?:\w+\W+){0,2}?"
       r"(?:ignorieren|vergessen|missachten|verwerfen)\b|\babweichend\W+(?:zu|von)\W+(?:den\W+)?"
       r"(?:vorherigen|bisherigen|obigen)\b|\b(?:vorherigen|bisherigen)\W+(?:\w+\W+){0,2}?"
       r"hinter\W+sich\b"),
    _r("override.irrelevant.de", "override", 0.75,
       r"\b(?:alle|die|deine|ihre)\W+(?:bisherigen|vorherigen|vorigen|obigen|vorangegangenen|"
       r"fruheren)\W+(?:\w+\W+){0,6}?(?:sind|ist)\W+(?:\w+\W+){0,2}?(?:irrelevant|ungultig|"
       r"hinfallig|egal|aufgehoben)\b"),
    _r("override.fr", "override", 0.9,
       r"\b(?:ignore[rz]?|oublie[rz]?)\W+(?:toutes?\W+)?(?:les|tes|vos|mes|ces)\W+(?:\w+\W+){0,2}?"
       r"(?:instructions?|consignes?|regles?|directives?|ordres?|taches?)\b|"
       r"\b(?:ne\W+tiens\W+pas\W+compte|ne\W+tenez\W+pas\W+compte|fais\W+abstraction|"
       r"faites\W+abstraction)\b(?:\W+\w+){0,5}?\W+(?:instructions?|consignes?|regles?|"
       r"precede)\b|\boublie[rz]?\W+tout\b"),
    _r("override.es", "override", 0.9,
       r"\b(?:ignora\w*|olvid\w*|omite\w*|descarta\w*|haz caso omiso|no hagas caso)\b"
       r"(?:\W+\w+){0,5}?\W+(?:instrucciones|indicaciones|reglas|ordenes|directrices|tareas|"
       r"todo lo anterior|todo)\b"),
    _r("override.it", "override", 0.9,
       r"\b(?:ignora\w*|dimentica\w*|trascura\w*|non considerare|non tenere conto)\b"
       r"(?:\W+\w+){0,5}?\W+(?:istruzioni|indicazioni|regole|ordini|direttive|compiti|"
       r"tutto quanto|tutto)\b"),
    _r("override.pt", "override", 0.9,
       r"\b(?:ignor[ae]\w*|esquec[ae]\w*|desconsider[ae]\w*|despreze?)\b(?:\W+\w+){0,5}?\W+"
       r"(?:instrucoes|instrucao|regras|ordens|diretrizes|tarefas|tudo o que foi dito|tudo)\b"),
    _r("override.nl", "override", 0.9,
       r"\b(?:negeer\w*|vergeet|vergeten|sla\W+\w+\W+over)\b(?:\W+\w+){0,5}?\W+"
       r"(?:instructies|instructie|opdrachten|opdracht|regels|richtlijnen|aanwijzingen|"
       r"alles)\b"),
    _r("override.other_languages", "override", 0.85,
       r"\b(?:забудь\w*|игнорируй\w*|проигнорируй\w*|не\W+обращай\w*\W+внимани\w+|"
       r"zignoruj|zapomnij|pomin|zaboravi|ignoriraj|ignorisi|zanemari|zapomen\w*|ignoruj|"
       r"unut|yok\W+say)\b(?:\W+\w+){0,5}?\W+(?:инструкци\w+|указани\w+|правил\w*|все|всё|"
       r"instrukcj\w+|polecenia|zasady|instrukcije|upute|uputstva|pravila|sve|pokyny|talimat\w*)"
       r"\b"),
    # --- a new task replaces the old one ----------------------------------------------------
    _r("new_task.en", "override", 0.55,
       r"\b(?:your|the)\W+new\W+(?:task|instructions?|role|goal|assignment|rules?|"
       r"purpose)\b|\bnew\W+instructions?\s*:|\binstead\W+(?:you\W+(?:will|must|should)\W+)?"
       r"(?:say|write|print|output|respond|reply|answer)\b|"
       r"\b(?:from\W+now\W+on|henceforth|for\W+the\W+rest\W+of\W+this\W+conversation)\b"
       r"(?:\W+\w+){0,3}?\W+(?:you|your)\b"),
    _r("new_task.ml", "override", 0.55,
       r"\b(?:neue\W+aufgabe|neuen\W+auftrag|ab\W+(?:jetzt|sofort)\W+(?:bist|sind|wirst|"
       r"musst)|nouvelle\W+tache|nouvelles\W+instructions|a\W+partir\W+de\W+maintenant|"
       r"desormais\W+tu|nueva\W+tarea|nuevas\W+instrucciones|a\W+partir\W+de\W+ahora|"
       r"nuovo\W+compito|nuove\W+istruzioni|d'?ora\W+in\W+poi|nova\W+tarefa|novas\W+instrucoes|"
       r"a\W+partir\W+de\W+agora|nieuwe\W+taak|nieuwe\W+instructies|vanaf\W+nu)\b"),
    _r("stop_and_do", "override", 0.5,
       r"(?:^|[\s.!,:;\-])(?:stop|halt|attention|achtung|stopp)\s*[-–—:!.,]+\s*"
       r"(?:\w+\W+){0,8}?(?:write|say|print|output|ignore|answer|schreib\w*|sag\w*|"
       r"antworte\w*)\b"),
    _r("context_switch", "override", 0.4,
       r"\b(?:that\W+is|that'?s|this\W+is)\W+(?:enough|done|finished)\b|\b(?:now|but\W+now)\W+"
       r"(?:\w+\W+){0,4}?(?:another|further|more|a\W+new|the\W+following)\W+tasks?\b|"
       r"\b(?:nun|jetzt)\W+folgen\W+weitere\W+aufgaben\b|\bdas\W+(?:genugt|ist\W+erledigt)\b"),
    _r("escaped_newlines", "delimiter", 0.45, r"(?:\\\s?n\s*){4,}"),
    _r("fake_context", "delimiter", 0.5,
       r"(?:^|\W)\$?(?:document\W+)?(?:context|kontext|documents?|artikel|articles?|sources?)"
       r"\s*[:=\{\"]\s*.{0,400}?\b(?:question|frage)\s*[:?]|(?:^|\s)\$(?:documents?|context)\s*:"),
    # --- jailbreak personas / role play ------------------------------------------------------
    _r("persona.dan", "jailbreak", 0.85,
       r"(?-i:\bDAN\b)(?=.{0,80}\b(?:mode|prompt|jailbreak|anything|now|stands|act|you)\b)|"
       r"\bdo\W+anything\W+now\b|\bjail\W?break(?:s|ing|ed)?\b|\bdeveloper\W+mode\b|"
       r"\bgod\W+mode\b|\bstan\W+mode\b|\bevil\W?(?:bot|mode|confidant)\b|(?-i:\bAIM\b)\W+"
       r"(?:stands|is an unfiltered)|\banti-?gpt\b|\bbetter\W?dan\b"),
    _r("persona.unrestricted", "jailbreak", 0.75,
       r"\b(?:without|no|free\W+(?:of|from)|ignore\w*|bypass\w*|remove\w*)\W+(?:any\W+|all\W+"
       r"|your\W+)?(?:ethical\W+|moral\W+|content\W+|safety\W+|openai\W+)?(?:restrictions?|"
       r"filters?|filtering|limits|limitations|censorship|guidelines|rules|boundaries|"
       r"safeguards|guardrails)\b(?:\W+\w+){0,6}?\W+(?:you|answer|respond|reply|act|mode|"
       r"ai|assistant|model)\b|\b(?:unfiltered|uncensored|unrestricted|unaligned|amoral)\W+"
       r"(?:ai|assistant|model|chatbot|mode|version|response|answers?)\b"),
    _r("persona.roleplay", "jailbreak", 0.45,
       r"\b(?:pretend|imagine|suppose)\W+(?:that\W+)?(?:you\W+(?:are|were|can|could|have)|to\W+"
       r"be)\b|\b(?:act|behave|respond)\W+(?:as|like)\W+(?:if\W+)?(?:you\W+(?:are|were)\W+)?"
       r"(?:an?\W+)?(?:\w+\W+){0,2}?(?:ai|assistant|bot|chatbot|model|character|person|"
       r"terminal|hacker|villain|criminal|expert|linux|grandma|grandmother)\b|"
       r"\byou\W+are\W+(?:now|no\W+longer)\b|\bnow\W+you\W+are\b|\broleplay\W+as\b|"
       r"\brole-?playing\W+as\b|\bplay\W+the\W+role\W+of\b|\bstay\W+in\W+character\b|"
       r"\bi\W+want\W+you\W+to\W+act\W+as\b|\b(?:hypothetical|theoretical|fictional)\W+"
       r"(?:world|scenario|universe)\b"),
    _r("persona.malicious", "jailbreak", 0.5,
       r"\b(?:evil|malicious|rogue|unethical|unhinged|bose|boser|bosen)\W+(?:ai|ki|assistant|"
       r"bot|chatbot|version|twin|model)\b"),
    _r("persona.roleplay.ml", "jailbreak", 0.45,
       r"\b(?:stell\W+dir\W+vor|stellen\W+sie\W+sich\W+vor|tu\W+so\W+als|tun\W+sie\W+so|"
       r"du\W+bist\W+(?:jetzt|nun|ab\W+jetzt)|(?:jetzt|nun)\W+bist\W+du|ich\W+mochte,?\W+dass\W+"
       r"(?:sie|du)\W+als\W+(?:\w+\W+){1,6}?(?:fungieren|agieren|auftreten|handeln)|sie\W+sind\W+(?:jetzt|nun)|fais\W+comme\W+si|"
       r"imagine\W+que\W+tu|tu\W+es\W+maintenant|finge\W+(?:que|ser)|imagina\W+que\W+eres|"
       r"ahora\W+eres|fingi\W+di|immagina\W+di\W+essere|ora\W+sei|finja\W+(?:que|ser)|"
       r"agora\W+voce\W+e|doe\W+alsof|je\W+bent\W+nu|stel\W+je\W+voor)\b"),
    # --- system prompt extraction -------------------------------------------------------------
    _r("extraction.system_prompt", "extraction", 0.85,
       r"\b(?:reveal|show|print|repeat|output|display|tell|give|share|leak|dump|spell|write|"
       r"list|disclose|recite|expose|what\W+(?:is|are|were|was))\b(?:\W+\w+){0,4}?\W+"
       r"(?:(?:system|initial|original|hidden|secret|internal|developer|pre-?prompt|"
       r"confidential)\W+(?:\w+\W+)?(?:prompts?|instructions?|message|rules|guidelines|"
       r"configuration)|(?:your|the)\W+(?:prompts?|instructions)(?:\W+(?:texts?|verbatim|"
       r"above|word\W+for\W+word))?)\b"),
    _r("extraction.repeat_above", "extraction", 0.75,
       r"\b(?:repeat|print|output|copy|reproduce|translate|summari[sz]e)\W+(?:\w+\W+){0,3}?"
       r"(?:everything|all|the\W+(?:text|words|content|lines)|what\W+(?:is|was)\W+written)"
       r"\W+(?:\w+\W+){0,2}?(?:above|before\W+this|so\W+far|verbatim|word\W+for\W+word)\b|"
       r"\bwhat\W+(?:was|is)\W+written\W+(?:above|at\W+the\W+beginning)\b|\b(?:sentences|words|"
       r"lines|text)\W+before\W+(?:the|this|my)\W+(?:text|message|prompt|question)\b|"
       r"\b(?:information|text|instructions)\W+in\W+the\W+prompt\b|\bbeginning\W+with\W+"
       r"[\"'“]?you\W+are\b"),
    _r("extraction.ml", "extraction", 0.8,
       r"\b(?:zeig\w*|gib|nenn\w*|verrat\w*|wiederhol\w*|montre\w*|affiche\w*|revele\w*|"
       r"muestra\w*|revela\w*|mostra\w*|rivela\w*|toon|laat\W+zien)\b(?:\W+\w+){0,4}?\W+"
       r"(?:system-?prompt\w*|prompt-?text\w*|anweisungen|instructions|instrucciones|"
       r"istruzioni|instrucoes|instructies|prompt)\b"),
    # --- delimiter / role injection ------------------------------------------------------------
    _r("delimiter.tags", "delimiter", 0.6,
       r"</?\s*(?:system|context|instructions?|prompt|assistant|admin|system_prompt)\s*>|"
       r"<\|(?:im_start|im_end|system|endoftext|user|assistant)\|>|"
       r"\[/?(?:INST|SYS)\]|<<\s*/?SYS\s*>>|\bEND\W+OF\W+(?:CONTEXT|DOCUMENT|PROMPT|INPUT|"
       r"INSTRUCTIONS)\b"),
    # "System: ..." also starts harmless lines ("System: Ubuntu 22.04"), so alone it stays
    # below the default threshold; with any other signal it tips the score.
    _r("delimiter.role_line", "delimiter", 0.4,
       r"(?:^|\n)\s*(?:#{2,}\s*)?(?:system|assistant|admin|developer|root)\s*(?:prompt\s*)?"
       r"[:>]\s*\S|(?:^|\n)\s*#{2,}\s*(?:new\s+)?(?:instructions?|system|task|override)\s*:"),
    # --- exfiltration ---------------------------------------------------------------------------
    _r("exfiltration.markdown_image", "exfiltration", 0.7,
       r"!\[[^\]]*\]\(\s*https?://[^)\s]*[?&][^)\s]*=[^)]*\)"),
    _r("exfiltration.send", "exfiltration", 0.7,
       r"\b(?:send|post|upload|forward|transmit|exfiltrate|leak|email|e-mail)\b(?:\W+\w+){0,6}?"
       r"\W+to\W+(?:https?://|www\.|\S+@\S+\.\w+|(?:this|the|my|our)\W+(?:url|server|endpoint|"
       r"webhook|address))|\b(?:curl|wget|fetch)\W+https?://"),
    _r("exfiltration.link_with_data", "exfiltration", 0.5,
       r"https?://\S+[?&]\w+=\s*(?:\{|\[|<|\$)\w*"),
    # --- indirect injection: text (usually in a document) that addresses the model ----------
    _r("indirect.addresses_the_model", "indirect", 0.5,
       r"\b(?:if|when)\W+you\W+are\W+(?:an?\W+)?(?:ai|llm|large\W+language\W+model|language"
       r"\W+model|(?:ai\W+)?assistant|chatbot|gpt|bot)\b(?:\W+\w+){0,3}?\W+(?:reading|"
       r"processing|summari[sz]ing|seeing|parsing)\b|\b(?:note|message|instructions?|memo)\W+"
       r"(?:to|for)\W+(?:the\W+|any\W+)?(?:ai|llm|assistant|model|chatbot|gpt|bot)s?\b|"
       r"\b(?:ai|llm|gpt)\W+(?:assistants?|models?|agents?)\W+(?:reading|processing|"
       r"summari[sz]ing)\W+this\b|\bwhen\W+(?:you\W+)?(?:summari[sz]e|summari[sz]ing|answer"
       r"\w*\W+questions\W+about)\W+this\W+(?:page|document|text|article|email|file)\b"
       r"(?:\W+\w+){0,3}?\W+(?:tell|say|recommend|include|add|write|ignore|claim)\b"),
    # --- "just say X" hijacks ------------------------------------------------------------------
    _r("hijack.say_exactly", "hijack", 0.3,
       r"\b(?:just|only|simply)?\W*(?:say|print|write|output|respond\W+with|reply\W+with|"
       r"answer\W+with|sag|schreib\w*|antworte\W+mit)\b\W+(?:\w+\W+){0,2}?[\"'“„«][^\"'”“«»]"
       r"{1,60}[\"'”“»]"),
    _r("hijack.make_it_say", "hijack", 0.45,
       r"\b(?:say|state|tell\W+(?:me|everyone)|write|admit|include|declare|claim|repeat)\W+"
       r"(?:that\W+)?(?:you\W+(?:hate|love|despise|support)\b|.{0,40}?\b(?:is|are)\W+(?:the\W+)?"
       r"(?:best|worst|superior|stupid|doof|the\W+most\W+powerful)\b)|\brepeat\W+after\W+me\b"),
    _r("hijack.pwned", "hijack", 0.6, r"\bi\W+have\W+been\W+pwned\b|\bpwned\b"),
    _r("coercion", "override", 0.4,
       r"\byou\W+(?:must|have\W+to|are\W+required\W+to|will)\W+(?:obey|comply|follow\W+my|"
       r"answer\W+(?:every|all|any))\b|\bdo\W+not\W+(?:refuse|decline|apologi[sz]e|warn)\b|"
       r"\bnever\W+refuse\b"),
)

OBFUSCATION_WEIGHT = 0.3
MIXED_SCRIPT_WEIGHT = 0.35
SPACED_KEYWORD_WEIGHT = 0.45
# Spelled-out runs lose their word boundaries ("saythatyouhate..."), so the words that carry an
# attack are looked for inside them.
_SPACED_KEYWORDS = re.compile(
    r"ignore|disregard|forget|instruction|systemprompt|prompt|jailbreak|password|pretend|"
    r"sayt?hat|youhate|ihate|reveal|secret|override|bypass|pwned|vergiss|ignorier|anweisung")
_WORD = re.compile(r"\w{3,}")


def _script(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    for script in ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN"):
        if name.startswith(script):
            return script
    return "OTHER"


def mixed_script_words(text: str) -> int:
    """Words mixing Latin with Cyrillic/Greek/Armenian letters: the homoglyph trick."""
    if text.isascii():  # every ASCII letter is Latin
        return 0
    count = 0
    for word in _WORD.findall(text):
        scripts = {s for s in map(_script, word) if s}
        if "LATIN" in scripts and scripts & {"CYRILLIC", "GREEK", "ARMENIAN"}:
            count += 1
    return count


_FINDER = literal_finder(
    frozenset(s for rule in RULES for clause in rule.required for s in clause))


def _matching(text: str) -> set[str]:
    present = literals_present(_FINDER, text)
    return {rule.name for rule in RULES
            if may_match(rule.required, present) and rule.pattern.search(text)}


def light_fold(text: str) -> str:
    """Lowercase without accents: the form the multilingual patterns are written for. Not an
    evasion (accents are ordinary spelling), unlike what ``skeleton`` undoes."""
    if text.isascii():  # nothing to decompose
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


_WEIGHTS = {rule.name: rule.weight for rule in RULES}


def combine(weights: list[float]) -> float:
    """Noisy-OR: independent pieces of evidence, each able to block alone if strong enough."""
    remaining = 1.0
    for weight in weights:
        remaining *= 1.0 - weight
    return round(1.0 - remaining, 4)


def injection_score(text: str) -> InjectionScore:
    """Score ``text`` (already normalized) on every view; ``rules`` names what matched."""
    by_view: dict[str, list[str]] = {}
    plain: set[str] = set()
    matched_by_form: dict[str, set[str]] = {}
    for name, view in views(text):
        hits: set[str] = set()
        for form in (view, light_fold(view)):
            # Every rule ignores case, so an ASCII text and its lower case match the same
            # rules: the text, its skeleton and their folds are mostly one form, matched once.
            key = form.lower() if form.isascii() else form
            if key not in matched_by_form:
                matched_by_form[key] = _matching(key)
            hits |= matched_by_form[key]
        if hits:
            by_view[name] = sorted(hits)
        if name == "text":
            plain = hits
    matched = set().union(*by_view.values()) if by_view else set()
    weights = [_WEIGHTS[name] for name in matched]
    rules = sorted(matched)
    if matched - plain:
        weights.append(OBFUSCATION_WEIGHT)
        rules.append("obfuscation")
    runs = spaced_runs(text)
    if any(_SPACED_KEYWORDS.search(run) for run in runs):
        weights.append(SPACED_KEYWORD_WEIGHT)
        rules.append("spaced_keywords")
        if "obfuscation" not in rules:
            weights.append(OBFUSCATION_WEIGHT)
            rules.append("obfuscation")
    if mixed_script_words(text):
        weights.append(MIXED_SCRIPT_WEIGHT)
        rules.append("mixed_script")
    return InjectionScore(score=combine(weights), rules=rules, views=by_view)
