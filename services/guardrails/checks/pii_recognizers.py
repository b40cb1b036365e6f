"""Recognizers the guardrails add to Presidio's for better PII recall.

Presidio's defaults miss what #14 measured: phone numbers in international and local formats
(its phone recognizer tries eight regions, and only the formats ``phonenumbers`` validates
there), street addresses written the European way ("Jakobi 69", "Školní 939"), flat and suite
numbers and postal codes, and names spaCy labels as organisations or misses ("ms. Wijtze").
These are patterns with validation and context, not a named-entity model of our own:

* ``PHONE_NUMBER``: a candidate is any run of digits with phone-like separators; it is
  parsed with ``phonenumbers`` (international form first, then each of ``PHONE_REGIONS``).
  Valid somewhere: a firm finding; only the shape of a phone number: weak, a context word
  ("call", "phone", "fax"...) within five words before it lifts it over the threshold.
  Dates, IPv4 addresses, card-length digit runs and plain numbers are never candidates.
* ``ADDRESS``: flat/suite numbers, "number words number" streets, postal codes after a
  "zip"/"postal code" cue, and number-first streets in lower case.
* ``PERSON``: a capitalised word after a title (Mr, Ms, Dr...) or after "my name is", and a
  name right before "lives"/"lived at"; only the name is the span.

Every score here is below 1.0, so a validated finding from Presidio (a card number, an IBAN)
still wins an overlap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

PHONE_ENTITY = "PHONE_NUMBER"
ADDRESS_ENTITY = "ADDRESS"
PERSON_ENTITY = "PERSON"

# Regions tried for a number written without a country code: North America, the big European
# and Latin American markets, India, Australia and East Asia. A number valid in none of them
# is still a weak candidate.
PHONE_REGIONS: tuple[str, ...] = (
    "US", "GB", "DE", "FR", "IT", "ES", "NL", "BE", "CH", "AT", "SE", "DK", "NO", "FI", "PL",
    "CZ", "PT", "IE", "BR", "MX", "AR", "IN", "AU", "NZ", "ZA", "IL", "JP", "CN", "SG",
)
PHONE_VALID_SCORE = 0.7
PHONE_INTERNATIONAL_SCORE = 0.85
PHONE_SHAPE_SCORE = 0.3
PHONE_CUE = re.compile(r"(?i)\b(?:phone|call(?:ed|ing)?|tel|telephone|mobile|cell|fax|office|"
                       r"reach|contact|dial|whats ?app|sms|text|ring|number|no\.|nr\.?|"
                       r"landline|hotline|extension|ext)\b")
CONTEXT_BOOST = 0.35
_NOT_PHONE_CUE = re.compile(r"(?i)\b(?:version|v|release|build|isbn|invoice|order|ticket)\s*"
                            r"#?:?\s*$")

# A candidate: optional +/00 country code, optional (area code), then 2-5 groups of digits
# joined by single separators, and an optional extension.
_PHONE_CANDIDATE = re.compile(
    r"(?<![\w+./-])"
    r"(?:(?:\+|00)\d{1,3}[\s.-]?)?"
    r"(?:\(0?\d{1,4}\)[\s.-]?)?"
    r"\d{1,11}(?:[\s.-]\d{1,8}){0,5}"
    r"(?:\s?(?:x|ext\.?|extension)\s?\d{1,6})?"
    r"(?![\w-]|\.\d|/\d)", re.IGNORECASE)
_DATE_LIKE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")
_IPV4_LIKE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_SSN_LIKE = re.compile(r"^\d{3}[- .]\d{2}[- .]\d{4}$")
_CARD_LIKE = re.compile(r"^\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}$")
# the letters-and-digits head of an IBAN ("GB42 JNAO ", "NL38 TIQU ") right before a candidate
_IBAN_HEAD = re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4})*\s?$")
_DIGIT = re.compile(r"\d")


def _digits(text: str) -> str:
    return "".join(_DIGIT.findall(text))


def phone_score(candidate: str) -> float | None:
    """The score a phone-number candidate gets, or None when it is not one."""
    import phonenumbers

    digits = _digits(re.split(r"(?i)\s?(?:x|ext\.?|extension)\s?\d", candidate)[0])
    if not 7 <= len(digits) <= 15:
        return None
    if any(p.match(candidate) for p in (_DATE_LIKE, _IPV4_LIKE, _SSN_LIKE, _CARD_LIKE)):
        return None
    separated = bool(re.search(r"[\s.()-]", candidate.strip()))
    if re.fullmatch(r"\d+\.\d+", candidate):
        return None  # a decimal or a version number
    international = candidate.startswith(("+", "00"))
    if not separated and not international and not (
            len(digits) == 10 or (len(digits) == 11 and digits[0] in "013")):
        return None  # a bare digit run: an order or account number more often than a phone
    text = "+" + candidate[2:] if candidate.startswith("00") else candidate
    if international:
        try:
            number = phonenumbers.parse(text, None)
            if phonenumbers.is_valid_number(number):
                return PHONE_INTERNATIONAL_SCORE
            if phonenumbers.is_possible_number(number):
                return PHONE_VALID_SCORE
        except phonenumbers.NumberParseException:
            pass
        return PHONE_SHAPE_SCORE
    for region in PHONE_REGIONS:
        try:
            if phonenumbers.is_valid_number(phonenumbers.parse(text, region)):
                return PHONE_VALID_SCORE if separated else PHONE_SHAPE_SCORE + 0.15
        except phonenumbers.NumberParseException:
            continue
    if separated or digits.startswith("0"):
        return PHONE_SHAPE_SCORE
    return None


def has_cue(text: str, start: int, end: int, cue: re.Pattern[str], before: int = 48,
            after: int = 32) -> bool:
    """Whether ``cue`` occurs within ``before`` characters before the span or ``after`` after."""
    return bool(cue.search(text[max(0, start - before):start])
                or cue.search(text[end:end + after]))


class _RegexRecognizer(EntityRecognizer):
    """Base for recognizers that find candidates with a regular expression and score them in
    Python; the span may be a group of the match."""

    ENTITY = ""

    def load(self) -> None:  # nothing to load
        pass

    def candidates(self, text: str) -> Iterator[tuple[int, int, float]]:
        raise NotImplementedError

    def analyze(self, text: str, entities: list[str],
                nlp_artifacts: NlpArtifacts | None = None) -> list[RecognizerResult]:
        if entities and self.ENTITY not in entities:
            return []
        return [RecognizerResult(self.ENTITY, start, end, score,
                                 analysis_explanation=AnalysisExplanation(
                                     recognizer=self.name, original_score=score),
                                 recognition_metadata={
                                     RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                     RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id})
                for start, end, score in self.candidates(text)]


class InternationalPhoneRecognizer(_RegexRecognizer):
    ENTITY = PHONE_ENTITY

    def __init__(self) -> None:
        super().__init__(supported_entities=[PHONE_ENTITY], name="InternationalPhoneRecognizer",
                         supported_language="en")

    def candidates(self, text: str) -> Iterator[tuple[int, int, float]]:
        for match in _PHONE_CANDIDATE.finditer(text):
            value = match.group(0).rstrip(" .-")
            start, end = match.start(), match.start() + len(value)
            if _IBAN_HEAD.search(text[max(0, start - 40):start]) or _NOT_PHONE_CUE.search(
                    text[max(0, start - 24):start]):
                continue
            score = phone_score(value)
            if score is None:
                continue
            if score < PHONE_VALID_SCORE and has_cue(text, start, end, PHONE_CUE):
                score += CONTEXT_BOOST
            yield start, end, min(score, 0.9)


_L = r"[^\W\d_]"  # a letter, any script
_WORD = _L + r"[\w'’.-]*"
_CAP = r"[A-ZÀ-ÞĀ-Ž][\w'’.-]*"  # a capitalised word
ADDRESS_CUE = re.compile(
    r"(?i)(?:\baddress(?:es)?\b|\bship(?:ped|ping)?\b|\bdeliver(?:ed|y)?\b"
    r"|\blive[sd]?\s+(?:at|on|in)|\bmoved?\s+(?:to|here)|\boffice\s+is\s+(?:at|on)"
    r"|\blocated\s+(?:at|on)|\bsend\b.{0,12}\bto"
    r"|\bbilling\b|\breturn\s+to|\bzip\b|\bpostal\b|\bpost ?code\b|\bresid\w*)")
# Street types written after the name ("Gamble Ridge", "Stewart Passage": USPS suffixes and
# their British and Irish cousins)
_SUFFIXES = (
    "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|square|sq|"
    "terrace|ter|parkway|pkwy|circle|cir|highway|hwy|alley|row|crescent|close|gardens|grove|"
    "hill|hills|park|ridge|passage|extension|prairie|lodge|locks|mall|fords?|throughway|"
    "trafficway|crossing|crossroad|creek|springs?|valley|views?|village|villages|heights|"
    "harbor|harbour|haven|island|isle|junction|knolls?|lakes?|landing|light|lights|loop|manor|"
    "meadows?|mews|mill|mills|mission|motorway|mount|mountain|neck|orchard|oval|path|pike|"
    "pines?|plains?|plaza|point|points|ports?|radial|ramp|ranch|rapids?|rest|river|route|"
    "shoals?|shores?|skyway|spur|stravenue|stream|summit|trace|track|trail|tunnel|turnpike|"
    "underpass|union|unions|viaduct|vista|walk|walks|wall|wells?|center|centre|common|corners?|"
    "course|cove|coves|curve|dale|dam|divide|estates?|expressway|falls|ferry|fields?|flats?|"
    "forest|forge|forks?|fort|freeway|garden|gateway|glen|green|greens|groves|burg|burgs|"
    "bypass|camp|canyon|cape|causeway|cliffs?|club|brooks?|bridge|branch|bottom|bluffs?|bend|"
    "beach|bayou|arcade|annex|anchorage|overpass|brae|wynd|drove|chase|gate|hollow|bank|"
    "parade|esplanade|promenade|quay|wharf|market|yard|rise|side|end|fold|green")
_EU_BEFORE = (  # street types written before the name ("Via Ponti", "rue Marguerite Auger")
    "via|viale|piazza|piazzale|strada|stretto|contrada|incrocio|vicolo|corso|largo|borgo|"
    "rotonda|canale|vico|calle|avenida|paseo|plaza|camino|carrer|pasaje|pasadizo|ronda|"
    "urbanización|urbanizacion|callejón|callejon|cañada|glorieta|rambla|alameda|acceso|vial|"
    "cuesta|travesía|travesia|rua|travessa|largo|praça|praca|rue|avenue|boulevard|chemin|allée|"
    "allee|impasse|place|quai|route|cours|voie|square|passage|sentier")
_EU_COMPOUND = (  # Dutch/German/Nordic street names as one word ("Ivysteeg", "Jolijnpad")
    "steeg|pad|hof|laan|straat|gracht|plein|weg|kade|singel|dreef|dijk|markt|park|ring|"
    "strasse|straße|gasse|allee|platz|damm|ufer|gade|gatan|vägen|vej|veien|utca|ulica")
_ADDRESS_PATTERNS: tuple[tuple[re.Pattern[str], float, bool], ...] = (
    # (pattern, score, needs an address cue nearby)
    # "Apt. 614", "Suite 771", "Unit 4B", "Flat 2", "Studio 59u"
    (re.compile(r"\b(?:apt|apartment|suite|ste|unit|flat|studio|piano|puerta|escalera)\.?\s?#?"
                r"\s?\d{1,5}[a-z]?\b", re.IGNORECASE), 0.55, True),
    (re.compile(r"\b(?:apt|apartment|suite|unit)\.?\s?#?\s?\d{1,5}[a-z]?\b", re.IGNORECASE), 0.6,
     False),
    # "6817 Stewart Passage", "0 Garry Extension", "19 1755 Nelson Mandela Drive",
    # "Flat 8, Kieran Springs" (above spaCy's 0.85, which reads "Kieran Springs" as a person)
    (re.compile(r"(?<![\w.,-])(?:(?i:flat|studio|apt\.?|unit|suite)\s+)?\d{1,6}[A-Za-z]?,?"
                r"(?:\s+\d{1,5})?\s+(?:" + _CAP + r"\s+){1,3}(?i:" + _SUFFIXES + r")\b\.?"),
     0.9, False),
    # "Via Ponti, 31", "Strada Vanessa, 462", "Pasadizo Tadeo Cerdán 46", "320, chemin Hubert"
    (re.compile(r"(?<![\w-])(?:\d{1,5}[a-z]?,?\s+)?(?i:" + _EU_BEFORE + r")\s+"
                r"(?:(?:de|del|della|di|du|des|la|le|da|do|dos)\s+)?(?:" + _CAP + r"\s*){1,3}"
                r"(?:,?\s*\d{1,5}[a-z]?\b)?"),
     0.55, True),
    (re.compile(r"(?<![\w-])\d{1,5}[a-z]?,?\s+(?i:" + _EU_BEFORE + r")\s+(?:(?:de|del|della|di|du|"
                r"des|la|le|da)\s+)?" + _CAP + r"(?:\s+" + _CAP + r"){0,2}"), 0.85, False),
    (re.compile(r"(?<![\w-])(?i:" + _EU_BEFORE + r")\s+" + _CAP + r"(?:\s+" + _CAP + r"){0,2},?\s+"
                r"\d{1,5}[a-z]?\b"), 0.9, False),
    # "Ivysteeg 695", "Zakariahof 7", "Kayleeboulevard 4"
    (re.compile(r"\b[A-ZÀ-Þ][\w'-]*(?i:" + _EU_COMPOUND + r"|boulevard)\s+\d{1,5}[a-z]?"
                r"(?:[/-]\d{1,4})?\b"), 0.9, False),
    # "87 Jakobi 69", "11 Školní 939", "98 árpád fejedelem útja 45", "52 Ibirapita 8057":
    # a building number, one to four words, a street number (Faker's and much of Europe's way)
    (re.compile(r"(?<![\w.,-])\d{1,4}\s+" + _WORD + r"(?:\s+" + _WORD + r"){0,3}\s+\d{1,5}[a-z]?"
                r"(?![\w-])", re.IGNORECASE), 0.7, True),
    # "23 8 wressle road", "48 107 Rue Abdelaziz": building and street numbers, then the street
    (re.compile(r"(?<![\w.,-])\d{1,4}\s+\d{1,5}[a-z]?\s+" + _WORD + r"(?:\s+" + _WORD + r"){0,3}"
                r"\s+(?:" + _SUFFIXES + r"|rue|via|calle|stadion)\b", re.IGNORECASE), 0.6, False),
    (re.compile(r"(?<![\w.,-])\d{1,4}\s+\d{1,5}[a-z]?\s+(?:rue|via|calle|n\.|s\.|e\.|w\.)\s*"
                + _WORD, re.IGNORECASE), 0.6, False),
    # any number-first run of capitalised words right after an address cue ("lives at 12 Foo")
    (re.compile(r"(?<![\w.,-])\d{1,6}[A-Za-z]?,?\s+(?:" + _CAP + r"\s*){1,4}"), 0.7, True),
    # Postal codes: only with a cue ("ZIP: 11164")
    (re.compile(r"(?i:\b(?:zip|postal code|post code|postcode|plz)\b)\s*:?\s*(\d{4,5}(?:-\d{4})?)"
                r"\b"), 0.6, False),
)


class AddressPartsRecognizer(_RegexRecognizer):
    ENTITY = ADDRESS_ENTITY

    def __init__(self) -> None:
        super().__init__(supported_entities=[ADDRESS_ENTITY], name="AddressPartsRecognizer",
                         supported_language="en")

    def candidates(self, text: str) -> Iterator[tuple[int, int, float]]:
        for pattern, score, needs_cue in _ADDRESS_PATTERNS:
            for match in pattern.finditer(text):
                group = 1 if pattern.groups else 0
                start, end = match.start(group), match.end(group)
                while end > start and text[end - 1] in " ,\n\t":
                    end -= 1
                if end <= start:
                    continue
                if needs_cue and not has_cue(text, start, end, ADDRESS_CUE, before=60, after=0):
                    continue
                yield start, end, score


CARD_CUE = re.compile(r"(?i)\b(?:card|visa|master ?card|amex|american express|credit|debit|"
                      r"charged?|cc|payment|paid|pay|declined|expires?|expiry|cvv|cvc|jcb|"
                      r"maestro|diners|discover)\b")
_CARD_CANDIDATE = re.compile(r"(?<![\w-])(?<!\d[ -])\d(?:[ -]?\d){11,18}(?![ -]?\d)(?![\w-])")
_CARD_IIN = re.compile(r"^(?:4|5[0-8]|6|2[2-7]|3[0-8]|1800|2131|2014|2149)")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class CardNumberRecognizer(_RegexRecognizer):
    """Card numbers of 12 to 19 digits (Maestro, JCB, Diners, 19-digit Visa) that Presidio's
    13-16-digit pattern misses: Luhn-valid, a known issuer prefix, and a payment cue nearby."""

    ENTITY = "CREDIT_CARD"

    def __init__(self) -> None:
        super().__init__(supported_entities=["CREDIT_CARD"], name="CardNumberRecognizer",
                         supported_language="en")

    def candidates(self, text: str) -> Iterator[tuple[int, int, float]]:
        for match in _CARD_CANDIDATE.finditer(text):
            digits = _digits(match.group(0))
            if not (_CARD_IIN.match(digits) and luhn(digits)):
                continue
            if has_cue(text, match.start(), match.end(), CARD_CUE):
                yield match.start(), match.end(), 0.9


_NAME = r"([A-Z][a-zà-ÿ'’-]+(?:\s+[A-Z][a-zà-ÿ'’-]+){0,2})"
_PERSON_PATTERNS: tuple[tuple[re.Pattern[str], float], ...] = (
    # "ms. Wijtze", "Dr Jane Roe": a title, then the name (titles in any case)
    (re.compile(r"(?<!\w)(?i:mr|mrs|ms|miss|mx|dr|prof|sir|madam|herr|frau|mme|mlle|sr|sra)"
                r"\.?\s+" + _NAME), 0.75),
    (re.compile(r"(?i:\bmy name is|\bi am called|\bname\s*:)\s+" + _NAME), 0.75),
    # "Filip lives on Nassaustraat 123", "Shelby Araujo lives at"
    (re.compile(r"(?<!\w)(?!(?:She|He|They|It|We|You|Who|This|That|One)\b)" + _NAME
                + r"\s+(?:lives|lived|resides|is living)\s+(?:at|on|in)\b"), 0.6),
    (re.compile(r"\b(?:written|directed|signed|approved|sent|composed|painted|reported|"
                r"authored|produced)\s+by\s+"
                r"([A-Z][a-zà-ÿ'’-]+\s+[A-Z][a-zà-ÿ'’-]+)\b"), 0.6),
    (re.compile(_NAME + r"'s\s+(?:address|phone|number|e-?mail|ssn|date of birth)\b"), 0.6),
)


class PersonContextRecognizer(_RegexRecognizer):
    ENTITY = PERSON_ENTITY

    def __init__(self) -> None:
        super().__init__(supported_entities=[PERSON_ENTITY], name="PersonContextRecognizer",
                         supported_language="en")

    def candidates(self, text: str) -> Iterator[tuple[int, int, float]]:
        for pattern, score in _PERSON_PATTERNS:
            for match in pattern.finditer(text):
                yield match.start(1), match.end(1), score


def extra_recognizers() -> list[EntityRecognizer]:
    """What the guardrails' detector adds to Presidio's and the shared domain recognizers."""
    return [InternationalPhoneRecognizer(), AddressPartsRecognizer(), PersonContextRecognizer(),
            CardNumberRecognizer()]
