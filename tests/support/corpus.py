"""A small corpus with known answers for query-path tests."""

from __future__ import annotations

from services.common.events import DocChange

FACTS = {
    "reactor": ("The Zorblax reactor in building seven is cooled with liquid nitrogen. "
                "Its operators replace the nitrogen tanks every Tuesday morning, and the reactor "
                "is shut down for inspection twice a year, in March and in September. The "
                "reactor was designed by engineer Miriam Okafor in 2019."),
    "garden": ("The rooftop garden at the Lisbon office grows tomatoes, basil and lemon trees. "
               "Volunteers water the plants at noon, and the harvest is shared in the canteen "
               "every Friday. The garden was opened by the facilities team in spring 2021."),
    "payroll": ("Salaries at Quillon Corp are paid on the twenty-fifth of each month. Bonuses "
                "are paid once a year in February after the annual review, and the payroll "
                "team answers questions through the finance service desk."),
}


def corpus(prefix: str, version: int = 1, **overrides: dict) -> list[DocChange]:
    return [
        DocChange(doc_id=f"{prefix}{name}", version=version, op="upsert", content=text,
                  title=name.title(), uri=f"https://wiki.example/{prefix}{name}", source="tests",
                  **{"privacy_class": "public", **overrides.get(name, {})})
        for name, text in FACTS.items()
    ]


def indexed_corpus(stack, prefix: str) -> list[DocChange]:
    """The corpus under ``prefix``, published and waited for until every chunk is indexed."""
    docs = corpus(prefix)
    stack.publish(docs)
    stack.wait_indexed({d.doc_id: 1 for d in docs})
    return docs
