"""Recognizers added to Presidio's for better PII recall, on every path that looks for PII.

A library module, not a guardrails one: the question's screening, the cited chunks' stored
findings and the training-data scrub must find the same entities (``services.common.pii``
loads these for all of them).

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

from services.common.pii import PiiFinding

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
            len(digits) == 10 or (len(digits) == 11 and digits[0] in "013")
            or (len(digits) == 9 and digits[0] == "0")):
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
    r"(?i)(?:\baddress(?:es)?\b|\bship(?:ped|ping)?\b|\bdeliver(?:ed|y|ing)?\b"
    r"|\blive[sd]?\s+(?:at|on|in)|\bliving\s+(?:at|on)|\bmoved?\s+(?:to|here)"
    r"|\boffice\s+is\s+(?:at|on)|\blocated\s+(?:at|on)|\bsend\b.{0,12}\bto|\bmail(?:ed)?\s+to"
    r"|\bbilling\b|\breturn\s+to|\bzip\b|\bpostal\b|\bpost ?code\b|\bresid\w*"
    r"|\bparcel\b|\bpackage\b|\bcourier\b|\bpost(?:ed)?\s+to|\bvisit\s+us\s+at|\bfind\s+us\s+at"
    r"|\bheadquarter\w*|\bhome\b|\bstreet\b|\bpremises\b|\bpick(?:ed)?\s?up\s+(?:at|from))")
# Street types written after the name: the USPS (Publication 28) and Australia Post lists and
# their British and Irish cousins, minus words too common to mean a street on their own
# ("end", "top", "line", "side" are kept only where the list had them before).
_SUFFIXES = (
    "street|st|streets|avenue|ave|road|rd|roads|boulevard|blvd|lane|ln|drive|dr|drives|court|ct|"
    "courts|way|ways|place|pl|square|sq|squares|terrace|ter|parkway|pkwy|parkways|circle|cir|"
    "circles|highway|hwy|alley|alleyway|row|crescent|cres|close|gardens|grove|groves|hill|hills|"
    "park|parks|ridge|ridges|passage|extension|extensions|prairie|lodge|lock|locks|mall|fords?|"
    "throughway|trafficway|crossing|crossroads?|creek|springs?|valleys?|views?|village|villages|"
    "ville|heights|harbors?|harbours?|haven|islands?|isles?|junctions?|knolls?|lakes?|landing|"
    "light|lights|loop|manors?|meadows?|mews|mill|mills|mission|motorway|mount|mountains?|neck|"
    "orchard|oval|path|pathway|pike|pines?|plains?|plaza|points?|ports?|radial|ramp|ranch|"
    "rapids?|rest|river|route|shoals?|shores?|skyway|spurs?|stravenue|stream|summit|trace|track|"
    "trail|trailer|tunnel|turnpike|underpass|unions?|viaduct|vistas?|walk|walks|walkway|wall|"
    "wells?|center|centers|centre|commons?|corners?|course|coves?|curve|dale|dam|divide|estates?|"
    "expressway|falls?|ferry|fields?|flats?|forest|forges?|forks?|fort|freeway|garden|gateway|"
    "glens?|greens?|burgs?|bypass|camp|canyon|cape|causeway|cliffs?|club|brooks?|bridge|branch|"
    "bottom|bluffs?|bend|beach|bayou|arcade|annex|anchorage|overpass|brae|wynd|drove|chase|gate|"
    "hollow|bank|parade|esplanade|promenade|quays?|wharf|market|yard|rise|side|end|fold|inlet|"
    "keys?|loaf|run|pass|crest|station|access|amble|approach|boardwalk|broadway|byway|circuit|"
    "circus|concourse|copse|corso|courtyard|dell|driveway|fairway|glade|grange|gully|"
    "laneway|lookout|meander|outlook|parklands|piazza|quadrant|reserve|retreat|ridgeway|"
    "roadside|roadway|strand|strip|tollway|wade|nook|vale")
_EU_BEFORE = (  # street types written before the name ("Via Ponti", "rue Marguerite Auger")
    "via|viale|v\\.le|piazza|p\\.za|piazzale|strada|stretto|contrada|incrocio|vicolo|corso|largo|"
    "borgo|rotonda|canale|vico|calle|c/|avenida|avda\\.?|paseo|plaza|camino|carrer|pasaje|"
    "pasadizo|ronda|urbanización|urbanizacion|callejón|callejon|cañada|glorieta|rambla|alameda|"
    "acceso|vial|cuesta|travesía|travesia|rua|travessa|praça|praca|ladeira|estrada|rodovia|"
    "viela|vila|quadra|esplanada|fazenda|chácara|chacara|sítio|sitio|trecho|pátio|patio|"
    "vereda|loteamento|residencial|conjunto|setor|núcleo|nucleo|colônia|colonia|jardim|"
    "recanto|trevo|viaduto|estação|estacao|"
    "rue|avenue|boulevard|bd|chemin|allée|allee|impasse|place|quai|route|cours|voie|square|"
    "passage|sentier|ulica|ul\\.|aleja|al\\.|plac|pl\\.|osiedle|os\\.|rondo|skwer|bulwar|"
    "náměstí|namesti|nábřeží|nabrezi|třída|trida")
_EU_WEAK_BEFORE = (  # the same, but also common words or initials: only with an address cue
    "av|av\\.|r\\.|parque|vale|área|area|lago|lagoa|morro|campo|feira|distrito|aeroporto|"
    "condomínio|condominio|passarela|favela|nad|pod|u|na|v|k")
_EU_COMPOUND = (  # street names as one word ("Ivysteeg", "Jolijnpad", "Kyrkostigen")
    "steeg|pad|hof|laan|straat|gracht|plein|weg|kade|singel|dreef|dijk|markt|park|ring|baan|"
    "plantsoen|strasse|straße|gasse|allee|platz|damm|ufer|chaussee|steig|pfad|graben|zeile|kai|"
    "gade|gatan|gata|vägen|väg|gränd|stigen|stig|backe|backen|torget|torg|leden|liden|slingan|"
    "gången|stræde|strede|vej|veien|vei|allé|plads|vænge|utca|útja|út|tér|körút|ulica")
_MONTHS = (r"(?:january|jan|february|feb|march|mar|april|apr|may|june|jun|july|jul|august|aug|"
           r"september|sept|sep|october|oct|november|nov|december|dec|januar|februar|märz|mai|"
           r"juni|juli|oktober|dezember|janvier|février|mars|avril|juin|juillet|août|septembre|"
           r"octobre|novembre|décembre|enero|febrero|marzo|abril|mayo|junio|julio|agosto|"
           r"septiembre|octubre|noviembre|diciembre|gennaio|febbraio|aprile|maggio|giugno|luglio|"
           r"settembre|ottobre|dicembre)\b\.?")
# a capitalised word that does not end a sentence ("October." is not part of a street name)
_CAP_IN = r"[A-ZÀ-ÞĀ-Ž][\w'’-]*(?:\.[\w'’-]+)*"
_FUNCTION_WORD = r"(?:and|or|of|to|the|in|with|for|from|by|than|per|a|an|at|on|as)\b"
_NUMBER = r"(?:\d{1,5}[a-zA-Z]?(?:\s?[/-]\s?\d{1,4}[a-zA-Z]?)?|[Ss]/[Nn]|s\.n\.)"
_PARTICLE = r"(?:de|del|della|di|du|des|la|le|da|do|dos|das|von|van|der|den|am|an|im|pod|nad)"
_NAME_WORDS = r"(?:" + _PARTICLE + r"\s+){0,2}" + _CAP + r"(?:\s+(?:" + _PARTICLE + r"\s+){0,2}" \
    + _CAP + r"){0,3}"
_PO_BOX_FIRM = (r"P\.?\s?O\.?\s?Box|Post\s+Office\s+Box|Postfach|Postbus|Postboks|Postbox|"
                r"Boîte\s+postale|Apartado(?:\s+de\s+Correos)?|Apdo\.|Casella\s+postale|"
                r"Caixa\s+Postal|Skrytka\s+pocztowa|Box|BP|B\.P\.|C\.P\.")
_ADDRESS_PATTERNS: tuple[tuple[re.Pattern[str], float, bool], ...] = (
    # (pattern, score, needs an address cue nearby)
    # "Apt. 614", "Suite 771", "Unit 4B", "Flat 2", "Studio 59u"
    (re.compile(r"\b(?:apt|apartment|suite|ste|unit|flat|studio|piano|puerta|escalera|"
                r"wohnung|étage|etage|bus|lok|m\.)\.?\s?#?\s?\d{1,5}[a-z]?\b", re.IGNORECASE),
     0.55, True),
    (re.compile(r"\b(?:apt|apartment|suite|unit)\.?\s?#?\s?\d{1,5}[a-z]?\b", re.IGNORECASE), 0.6,
     False),
    # Post-office boxes: "P.O. Box 123", "Postfach 10 01 01", "Apartado de Correos 32";
    # a bare "Box 12" or "BP 12" only with an address cue
    (re.compile(r"(?<![\w.])(?i:P\.?\s?O\.?\s?Box|Post\s+Office\s+Box|Postfach|Postbus|Postboks|"
                r"Boîte\s+postale|Apartado\s+de\s+Correos|Casella\s+postale|Caixa\s+Postal|"
                r"Skrytka\s+pocztowa)\s*(?:No\.?\s*)?\d{1,6}(?:\s\d{2}){0,2}\b"), 0.85, False),
    (re.compile(r"(?<![\w.])(?:" + _PO_BOX_FIRM + r")\s*\d{1,6}\b"), 0.6, True),
    # "6817 Stewart Passage", "0 Garry Extension", "19 1755 Nelson Mandela Drive",
    # "Flat 8, Kieran Springs", "Unit 84 08 Christina Byway" (above spaCy's 0.85, which reads
    # "Kieran Springs" as a person)
    (re.compile(r"(?<![\w.,-])(?:(?i:flat|studio|apt\.?|unit|suite)\s+(?:\d{1,5}[A-Za-z]?,?\s+)?)?"
                r"(?!(?:1[89]|20)\d\d,)(?:\d{1,5}[A-Za-z]?/)?\d{1,6}[A-Za-z]?,?(?:\s+\d{1,5})?\s+"
                r"(?!(?i:" + _MONTHS + r"))(?:" + _CAP_IN + r"\s+){1,3}(?i:" + _SUFFIXES
                + r")\b\.?"), 0.9, False),
    # "Via Ponti, 31", "Strada Vanessa, 462", "Pasadizo Tadeo Cerdán 46", "320, chemin Hubert"
    (re.compile(r"(?<![\w-])(?:\d{1,5}[a-z]?,?\s+)?(?i:" + _EU_BEFORE + "|" + _EU_WEAK_BEFORE
                + r")\s*" + _NAME_WORDS + r"(?:,?\s*" + _NUMBER + r"(?![\w/]))?"),
     0.55, True),
    (re.compile(r"(?<![\w-])\d{1,5}[a-z]?,?\s+(?i:" + _EU_BEFORE + r")\s+" + _NAME_WORDS), 0.85,
     False),
    (re.compile(r"(?<![\w-])(?i:" + _EU_BEFORE + r")\s*" + _NAME_WORDS + r",?\s+" + _NUMBER
                + r"(?![\w/])"), 0.9, False),
    # "Ivysteeg 695", "Zakariahof 7", "Kayleeboulevard 4", "Rejsbystræde 8", "Aspgatan 0"
    (re.compile(r"\b[A-ZÀ-ÞĀ-Ž][\w'-]*(?i:" + _EU_COMPOUND + r"|boulevard)\s+" + _NUMBER
                + r"(?![\w/])"), 0.9, False),
    # "Musvåge Allé 202", "Kossuth utca 64.", "Pohnertova 419", "Nad Rohatci 547": words, then
    # the number, only with an address cue
    (re.compile(r"(?<![\w-])" + _NAME_WORDS + r"(?:\s+(?i:" + _EU_COMPOUND + r"))?,?\s+"
                + _NUMBER + r"(?![\w/])"), 0.6, True),
    # "87 Jakobi 69", "11 Školní 939", "98 árpád fejedelem útja 45", "52 Ibirapita 8057":
    # a building number, one to four words, a street number (Faker's and much of Europe's way)
    (re.compile(r"(?<![\w.,-])\d{1,4}\s+(?!" + _FUNCTION_WORD + r"|" + _MONTHS + r")" + _WORD
                + r"(?:\s+(?!" + _FUNCTION_WORD + r")" + _WORD + r"){0,3}\s+\d{1,5}[a-z]?"
                r"(?![\w-])", re.IGNORECASE), 0.7, True),
    # the same as a line of its own (an address block): "98 árpád fejedelem útja 45."
    (re.compile(r"(?m)^[^\w\n]{0,4}[ \t]*(\d{1,4}[ \t]+" + _WORD + r"(?:[ \t]+" + _WORD
                + r"){0,3}[ \t]+\d{1,5}[a-z]?)\.?[ \t]*$"), 0.6, False),
    # "23 8 wressle road", "48 107 Rue Abdelaziz": building and street numbers, then the street
    (re.compile(r"(?<![\w.,-])\d{1,4}\s+\d{1,5}[a-z]?\s+" + _WORD + r"(?:\s+" + _WORD + r"){0,3}"
                r"\s+(?:" + _SUFFIXES + r"|rue|via|calle|stadion)\b", re.IGNORECASE), 0.6, False),
    (re.compile(r"(?<![\w.,-])\d{1,4}\s+\d{1,5}[a-z]?\s+(?:rue|via|calle|n\.|s\.|e\.|w\.)\s*"
                + _WORD, re.IGNORECASE), 0.6, False),
    # any number-first run of capitalised words right after an address cue ("lives at 12 Foo")
    (re.compile(r"(?<![\w.,-])(?!(?:1[89]|20)\d\d(?:s|,))\d{1,6}[A-Za-z]?,?\s+(?!(?i:" + _MONTHS
                + r"))(?:[A-ZÀ-ÞĀ-Ž][a-zà-ÿā-ž][\w'’-]*\s*){1,4}"), 0.7, True),
    # Postal codes: only with a cue ("ZIP: 11164")
    (re.compile(r"(?i:\b(?:zip|postal code|post code|postcode|plz|cap|cep)\b)\s*:?\s*"
                r"(\d{4,5}(?:-\d{3,4})?)\b"), 0.6, False),
)
# What may follow a street on the same line or the next lines of an address block: postcodes
# (US ZIP with state, UK, Canada, the Netherlands, Poland/Portugal/Brazil, Czechia/Sweden, the
# rest of Europe), town names with their particles, "(LO)"-style province codes.
_POSTCODE = (r"(?:[A-Z]{2}\s+\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}|"
             r"[A-Z]\d[A-Z]\s?\d[A-Z]\d|\d{4}\s?[A-Z]{2}\b|\d{2}-\d{3}|\d{4,5}-\d{3,4}|"
             r"\d{3}\s\d{2}|[A-Z]-\d{4,5}|\d{4,8})")
# a town word is letters only: "W1H" is a postcode
_TOWN_WORD = r"[A-ZÀ-ÞĀ-Ž][^\W\d_]+(?:['’-][^\W\d_]+)*(?![\w'’-])\.?"
_TOWN = (_TOWN_WORD + r"(?:(?:[ \t]+(?:" + _PARTICLE + r"|sur|en|sous|lès|les|al|al\.|upon|on|"
         r"in|am|bei|an|aan|der|pod|nad|u)){0,2}[ \t]*[ \t]" + _TOWN_WORD + r"){0,4}"
         r"(?:[ \t]*\([A-Z]{2}\)|[ \t]*/[ \t]*[A-Z]{2})?")
_TAIL_SEGMENT = re.compile(
    r"[ \t]*,[ \t]*(?:" + _POSTCODE + r"(?:,?[ \t]+" + _TOWN + r")?|" + _TOWN + r")"
    r"|[ \t]+" + _POSTCODE + r"(?:[ \t]+" + _TOWN + r")?(?![\w-])")
_BLOCK_LINE = re.compile(r"[ \t]*,?[ \t]*\n(?:[ \t]*\n)?[^\w\n]{0,4}[ \t]*([^\n]{1,40})(?=\n|$)")
_BLOCK_STOP = re.compile(r"(?i)[:?!@]|https?|\b(?:thanks|thank|regards|best|cheers|sincerely|"
                         r"dear|hi|hello|please|call|phone|tel|fax|email|e-mail)\b")
BLOCK_LINES = 4


def address_tail(text: str, end: int) -> int:
    """Where an address that ends at ``end`` really ends: the town, postcode and country that
    follow a street on its line (", 85297 Neuss", ", Springfield, IL 62704") and the short
    lines of an address block under it (a town line, "Denmark 15838"). Redacting only the
    street would leave the rest of the address in the text."""
    while match := _TAIL_SEGMENT.match(text, end):
        stop = match.end()
        while stop > end and text[stop - 1] in " \t.,;'’-":
            stop -= 1
        if stop <= end or not re.search(r"\w", text[end:stop]):
            break
        end = stop
    for _ in range(BLOCK_LINES):
        line = _BLOCK_LINE.match(text, end)
        if not line:
            break
        value = line.group(1).rstrip()
        if (_BLOCK_STOP.search(value) or len(value.split()) > 5
                or not re.search(r"\w", value)):
            break
        end = line.start(1) + len(value)
    return end


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
                yield start, address_tail(text, end), score


CARD_CUE = re.compile(r"(?i)\b(?:card|visa|master ?card|amex|american express|credit|debit|"
                      r"charged?|cc|payment|paid|pay|declined|expires?|expiry|cvv|cvc|jcb|"
                      r"maestro|diners|discover)\b")
_CARD_CANDIDATE = re.compile(r"(?<![\w-])(?<!\d[ -])\d(?:[ -]?\d){11,18}(?![ -]?\d)(?![\w-])")
_CARD_IIN = re.compile(r"^(?:4|5[0-8]|6|2[2-7]|3[0-8]|1800|2131|2014|2149|0604)")


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


_GIVEN = r"[A-ZÀ-ÞĀ-Ž][a-zà-ÿā-ž'’-]+"
_NAME = (r"(" + _GIVEN + r"(?:\s+(?:(?:de|van|von|der|den|da|di|du|del|della|dos|le|la|ter|ten|"
         r"bin|al)\s+){0,2}" + _GIVEN + r"){0,2})")
# Titles and honorifics in the languages the detector is asked about ("ms.", "Dr", "pan",
# "Sig.ra", "dhr.", "Mme"): the capitalised words after one are a name.
_FULL_NAME = (r"(" + _GIVEN + r"(?:\s+(?:(?:de|van|von|der|den|da|di|du|del|della|dos|le|"
              r"la|ter|ten|die)\s+){0,2}" + _GIVEN + r"){1,3})")
_TITLES = (r"mr|mrs|ms|miss|mx|dr|prof|sir|madam|herr|frau|mme|mlle|sr|sra|srta|señor|señora|"
           r"don|doña|dña|sig|sig\.ra|signor|signora|dott|dott\.ssa|ing|avv|dhr|mevr|mevrouw|"
           r"meneer|pan|pani|panna|monsieur|madame|mister|missus")
_PERSON_PATTERNS: tuple[tuple[re.Pattern[str], float], ...] = (
    # "ms. Wijtze", "Dr Jane Roe", "pan Nataniel Zaczyk": a title, then the name
    (re.compile(r"(?<!\w)(?i:" + _TITLES + r")\.?\s+" + _NAME), 0.75),
    (re.compile(r"(?i:\bmy name is|\bi am called|\bname\s*:|\bi'm|\bi am)\s+"
                r"(" + _GIVEN + r"(?:\s+(?:(?:de|van|von|der|da|di|du|dos|le|la)\s+)?" + _GIVEN
                + r"){1,2})"), 0.7),
    (re.compile(r"(?i:\bmy name is|\bi am called|\bname\s*:)\s+" + _NAME), 0.75),
    # "Filip lives on Nassaustraat 123", "Shelby Araujo lives at"
    (re.compile(r"(?<!\w)(?!(?:She|He|They|It|We|You|Who|This|That|One)\b)" + _NAME
                + r"\s+(?:lives|lived|resides|is living)\s+(?:at|on|in)\b"), 0.6),
    (re.compile(r"\b(?:written|directed|signed|approved|sent|composed|painted|reported|"
                r"authored|produced)\s+by\s+"
                r"(" + _GIVEN + r"\s+(?:(?:de|van|von|der|da|di|du|dos|le|la)\s+)?" + _GIVEN
                + r")\b"), 0.6),
    # a first and last name in a person's context: "ask Marthe Guillou to", "Théodore Bonnet
    # called", "thanks to Ana Lima" (the filters in ``refine`` drop "ask Microsoft Teams")
    (re.compile(r"(?i:\b(?:ask|tell|thank|thanks\s+to|spoke\s+(?:with|to)|talk(?:ed)?\s+(?:with|"
                r"to)|met(?:\s+with)?|forward(?:\s+(?:this|it))?\s+to|cc|dear|hi|hello|"
                r"attendees:?|remind|invite)\s+)" + _FULL_NAME), 0.6),
    (re.compile(r"(?<![\w-])" + _FULL_NAME + r"(?=\s+(?:joined|called|phoned|emailed|replied|"
                r"wrote\s+to|told\s+(?:me|us)|resigned|retired|was\s+hired|is\s+on\s+leave)\b)"),
     0.6),
    (re.compile(_NAME + r"'s\s+(?:address|phone|number|e-?mail|ssn|date of birth|wife|husband|"
                r"son|daughter|mother|father|birthday)\b"), 0.6),
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


# --- Refining the named-entity model's findings -------------------------------------------
# spaCy labels any capitalised run it does not know: street names ("Av Egito Gonçalves"),
# towns after a postcode ("85297 Neuss"), films and charities at the start of a sentence, URLs.
# A redacted non-name costs the reader context and the precision figures; these rules drop or
# retype such findings where the text around them says what they are. None of them lets a
# character the detector redacted through: a PERSON dropped inside an ADDRESS is still
# redacted as the address.
_NOT_NAMES_WORDS = """
sir madam mr mrs ms dr dear hi hello hey thanks thank regards best cheers welcome greetings
team support customer customers service services admin administrator user users manager
management board staff everyone all guys folks colleagues sales marketing finance legal hr it
monday tuesday wednesday thursday friday saturday sunday january february march july september
october november december god lord christmas easter internet web email e-mail settings save
cancel ok okay login logout password account report budget agreement section chapter page
figure table appendix annex exit gate room building floor office faq api ai ceo cto cfo coo
happy new year annual quarterly review master grand national park please note warning error
"""
NOT_NAMES = frozenset(_NOT_NAMES_WORDS.split())
_URLISH = re.compile(r"(?i)://|www\.|@|\.(?:com|org|net|io|gov|edu|info|biz|co|de|pl|uk|fr|"
                     r"it|es|nl|br|ru|cz|se|dk|ch|at|au|ca|in)\b/?")
_ORG_NOUNS = (r"company|firm|startup|start-up|nonprofit|non-profit|charity|organi[sz]ation|"
              r"corporation|business|brand|band|group|label|publisher|bank|retailer|"
              r"manufacturer|agency|university|school|college|hospital|club|team|airline|"
              r"501\(c\)\(?3\)?")
_PLACE_NOUNS = (r"city|town|village|country|river|mountain|lake|state|province|region|island|"
                r"county|district|suburb|neighbou?rhood|capital|municipality|commune|airport|"
                r"station|port")
_THING_NOUNS = (r"film|movie|song|album|single|novel|book|play|musical|series|show|programme|"
                r"program|game|video game|app|application|software|tool|library|framework|"
                r"language|product|device|phone|car|model|magazine|newspaper|website|platform|"
                r"painting|sculpture|opera|festival|event|award|prize|holiday|dish|drink|beer|"
                r"wine|brand")
_NON_PERSON_AFTER = re.compile(
    r"\s*,?\s*(?:is|was|are|were|has\s+been)\s+(?:a|an|the|one\s+of\s+the)\s+"
    r"(?:[\w()'’-]+\s+){0,5}?(?:(?P<org>" + _ORG_NOUNS + r")|(?P<place>" + _PLACE_NOUNS
    + r")|(?P<thing>" + _THING_NOUNS + r"))s?"
    r"(?=\s*(?:[.,;:!?)]|$)|\s+(?:that|which|directed|written|produced|released|founded|"
    r"based|located|headquartered|in|from|by|of|with|and|for|starring|where|known|near|on)\b)",
    re.IGNORECASE)
_PLACE_BEFORE = re.compile(
    r"(?i)(?:\b(?:moved|moving|relocated|emigrated|immigrated|flew|drove|travell?ed|came|"
    r"arrived|returned|commute[sd]?)\s+(?:back\s+)?(?:here\s+|there\s+)?(?:from|to)"
    r"|\b(?:born|raised|based|located|situated|headquartered|live[sd]?|living|resides?|"
    r"resided|grew\s+up|stay(?:ed|ing)?)\s+(?:in|near)|\bcity\s+of|\btown\s+of|\bvisit(?:ed|ing)?)"
    r"\s+$")
_PERSON_BEFORE = re.compile(
    r"(?i)\b(?:ask|asked|tell|told|thank|thanks\s+to|spoke\s+(?:with|to)|speak\s+(?:with|to)|"
    r"talk(?:ed)?\s+(?:with|to)|met(?:\s+with)?|meet(?:\s+with)?|forward(?:\s+(?:this|it))?\s+"
    r"to|cc|dear|hi|hello|hey|attendees:?|ping|remind|invite|congratulate|(?:written|signed|"
    r"authored|drafted|reviewed|sent|approved)\s+by)\s+$")
_PERSON_AFTER = re.compile(
    r"(?i)\s*(?:joined|called|phoned|emailed|e-mailed|replied|wrote\s+to|told|resigned|"
    r"retired|was\s+hired|was\s+born|is\s+on\s+leave|is\s+out\s+sick|and\s+(?:she|he)\b|,\s*"
    r"(?:she|he)\b|'s\s+(?:wife|husband|son|daughter|mother|father|birthday|phone|address|"
    r"e-?mail))")
_SUBJECT_PRONOUN = re.compile(r"(?i)\b(?:she|he)\s+(?:said|says|told|asked|is|was|will|has|"
                              r"had|can|does|did|wrote|called|thinks|thought)\b")
_ORG_WORDS = re.compile(
    r"(?i)\b(?:inc|ltd|llc|gmbh|ag|sa|plc|corp|corporation|company|co|bank|group|university|"
    r"college|school|team|software|systems|labs?|technologies|tech|services|foundation|"
    r"institute|association|council|ministry|department|agency|committee|club|store|"
    r"airlines?|motors|partners|holdings|solutions|hospital|church|museum|international|global|"
    r"media|news|press|records|studios?|pictures|games|network|capital|fund|trust|postal|"
    r"caixa|casella)\b")
_NAME_SHAPED = re.compile(r"^" + _GIVEN + r"(?:[\s-]+(?:(?:de|van|von|der|den|da|di|du|del|"
                          r"della|dos|le|la|ter|ten|die)\s+){0,2}" + _GIVEN + r"){0,3}$")
_NHS_CUE = re.compile(r"(?i)\b(?:nhs|national health|health|patient|hospital|gp|medical)\b")


def _words(value: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", value)]


def _overlaps(a: PiiFinding, b: PiiFinding) -> bool:
    return a.start < b.end and b.start < a.end


def _refined_person(text: str, finding: PiiFinding, addresses: list[PiiFinding],
                    links: list[PiiFinding]) -> PiiFinding | None:
    value = text[finding.start:finding.end]
    if _URLISH.search(value) or any(
            min(finding.end, link.end) - max(finding.start, link.start)
            > (finding.end - finding.start) / 2 for link in links):
        return None  # a web or mail address (spaCy reads "TestingStress.pl" as a name)
    words = _words(value)
    if not words or all(w in NOT_NAMES for w in words) or value[:1].isdigit():
        return None
    if _ORG_WORDS.search(value):
        return PiiFinding("ORGANIZATION", finding.start, finding.end, finding.score)
    for address in addresses:
        if not _overlaps(finding, address):
            continue
        if finding.start >= address.start:
            return None  # a street or town spaCy took for a name; the address covers it
        end = address.start
        while end > finding.start and not text[end - 1].isalnum():
            end -= 1
        if not re.search(r"[A-ZÀ-ÞĀ-Ž]", text[finding.start:end]):
            return None
        finding = PiiFinding(finding.entity_type, finding.start, end, finding.score)
    after = _NON_PERSON_AFTER.match(text, finding.end, min(len(text), finding.end + 120))
    if after:
        kind = "ORGANIZATION" if after.group("org") else (
            "LOCATION" if after.group("place") else None)
        return None if kind is None else PiiFinding(kind, finding.start, finding.end,
                                                    finding.score)
    if _PLACE_BEFORE.search(text, max(0, finding.start - 40), finding.start):
        return PiiFinding("LOCATION", finding.start, finding.end, finding.score)
    return finding


def _person_named_as_organisation(text: str, finding: PiiFinding) -> bool:
    """An ORGANIZATION finding shaped like a name, in a sentence that treats it as a person
    ("ask Hofman to", "Coret-Coredo joined the team", "... and she said")."""
    value = text[finding.start:finding.end]
    if not _NAME_SHAPED.match(value) or _ORG_WORDS.search(value):
        return False
    if _PERSON_BEFORE.search(text, max(0, finding.start - 30), finding.start):
        return True
    if _PERSON_AFTER.match(text, finding.end, min(len(text), finding.end + 40)):
        return True
    sentence_end = re.compile(r"[.!?](?:\s|$)").search(text, finding.end)
    stop = sentence_end.start() if sentence_end else len(text)
    return bool(_SUBJECT_PRONOUN.search(text, finding.end, min(stop, finding.end + 80)))


def refine(text: str, findings: list[PiiFinding]) -> list[PiiFinding]:
    """The findings with the named-entity model's non-names dropped or retyped (see above), a
    name-shaped organisation in a person's context retyped PERSON, and a UK NHS number that is
    also a phone number in a phone context (with nothing about health around) kept as the
    phone number."""
    addresses = [f for f in findings if f.entity_type == ADDRESS_ENTITY]
    links = [f for f in findings if f.entity_type in ("URL", "EMAIL_ADDRESS")]
    phones = [f for f in findings if f.entity_type == PHONE_ENTITY]
    out: list[PiiFinding] = []
    for finding in findings:
        if finding.entity_type == PERSON_ENTITY:
            refined = _refined_person(text, finding, addresses, links)
            if refined is not None:
                out.append(refined)
        elif finding.entity_type == "ORGANIZATION" and _person_named_as_organisation(
                text, finding):
            out.append(PiiFinding(PERSON_ENTITY, finding.start, finding.end, finding.score))
        elif finding.entity_type == PHONE_ENTITY and finding.score < PHONE_INTERNATIONAL_SCORE \
                and any(a.start <= finding.start and finding.end <= a.end for a in addresses):
            continue  # a postcode inside an address ("3036-429 Valpaços"), redacted with it
        elif finding.entity_type == "UK_NHS" and any(
                p.start <= finding.start and finding.end <= p.end for p in phones) and not \
                _NHS_CUE.search(text, max(0, finding.start - 60), finding.end + 30):
            continue
        else:
            out.append(finding)
    return out
