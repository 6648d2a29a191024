"""Finding a style guide's checkable rules in its text.

`extract_rules` keeps only the rules it can check exactly (a quoted phrase, a number); anything
else that reads like a rule is handed back in `unsure` for the user to decide, never guessed at.
Headings give context ("Never", "Say this, not that"); "Do:"/"Don't:" lines are examples, not
rules. What the rules mean is `chatbot.brand`; checking a reply is `chatbot.rule_check`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Literal

from chatbot.brand import BrandRules, PreferredTerm
from chatbot.emoji import find_emoji
from chatbot.ingest.style_guide import StyleGuide
from chatbot.rule_check import rule_key

__all__ = [
    "GuideExample",
    "RuleExtraction",
    "RuleSource",
    "block_sentences",
    "extract_rules",
    "guide_blocks",
]


@dataclass(frozen=True)
class RuleSource:
    """Where a rule came from: `rule` is the id `chatbot.rule_check.check_reply` reports."""

    rule: str
    line: int
    """1-based line in StyleGuide.text (for .md/.txt, the line in the file)."""
    text: str


@dataclass(frozen=True)
class GuideExample:
    """A "Do:" / "Don't:" example reply from the guide: kept to show, never turned into a rule."""

    kind: Literal["do", "dont", "example"]
    text: str
    line: int


@dataclass
class RuleExtraction:
    rules: BrandRules
    unsure: list[str] = field(default_factory=list)
    """Guide lines that read like rules but cannot be checked, as "line N: text", for the user."""
    sources: list[RuleSource] = field(default_factory=list)
    examples: list[GuideExample] = field(default_factory=list)

    def lines_of(self, rule: str) -> list[int]:
        return [s.line for s in self.sources if s.rule == rule]


@dataclass
class GuideBlock:
    kind: Literal["heading", "bullet", "paragraph", "row", "header_row"]
    lines: list[tuple[int, str]]
    level: int = 0

    @property
    def text(self) -> str:
        return " ".join(t for _, t in self.lines)


@dataclass
class GuideSentence:
    text: str
    """The sentence as written, whitespace collapsed and Markdown emphasis removed."""
    line: int
    masked: str
    """Lower-cased, apostrophes straightened, each quoted phrase replaced by QUOTE(i)."""
    quotes: list[str]


_MD_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET_RE = re.compile(r"^(?:[-*+•]|\d{1,3}[.)])\s+(.*)$")
_SETEXT_RE = re.compile(r"^(?:=+|-{2,})\s*$")
_TABLE_SEP_RE = re.compile(r"^\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_TERMINAL = (".", "!", "?", ":", '"', "”", "'", "’", ")", "…")


def guide_blocks(text: str) -> list[GuideBlock]:
    """Group lines into headings, bullet items (with their wrapped lines), paragraphs, table rows.

    Text from a PDF, or a guide written without Markdown, has no `#` headings; then a short line
    standing alone (the previous line ended a sentence) is taken as a heading.
    """
    lines = text.split("\n")
    infer = not any(_MD_HEADING_RE.match(line.strip()) for line in lines)
    blocks: list[GuideBlock] = []
    current: GuideBlock | None = None
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            current = None
            continue
        block = _classify(line, index + 1, current, lines, infer)
        if block is None:  # a wrapped line that continues the current block
            assert current is not None
            current.lines.append((index + 1, line))
            continue
        if block.kind == "header_row" and blocks and blocks[-1].kind == "row":
            blocks[-1].kind = "header_row"
            continue
        if block.kind == "heading" and block.level == -1:  # a setext underline
            assert current is not None
            current.kind, current.level = "heading", 2
            current = None
            continue
        blocks.append(block)
        current = block if block.kind in ("bullet", "paragraph") else None
    return blocks


def _classify(
    line: str, number: int, current: GuideBlock | None, lines: list[str], infer: bool
) -> GuideBlock | None:
    heading = _MD_HEADING_RE.match(line)
    if heading:
        return GuideBlock("heading", [(number, heading.group(2))], len(heading.group(1)))
    if _SETEXT_RE.match(line) and current and current.kind == "paragraph":
        return GuideBlock("heading", [], -1)
    if line.startswith("|"):
        kind = "header_row" if _TABLE_SEP_RE.match(line) else "row"
        return GuideBlock(kind, [(number, line)])
    bullet = _BULLET_RE.match(line)
    if bullet:
        return GuideBlock("bullet", [(number, bullet.group(1))])
    if infer and _looks_like_heading(line, number, lines):
        return GuideBlock("heading", [(number, line)], 2)
    if current is not None:
        return None
    return GuideBlock("paragraph", [(number, line)])


def _looks_like_heading(line: str, number: int, lines: list[str]) -> bool:
    words = line.split()
    if len(words) > 8 or len(line) > 60 or line.endswith((*_TERMINAL, ",", ";")):
        return False
    if not (line[0].isupper() or line[0].isdigit()):
        return False
    previous = lines[number - 2].strip() if number >= 2 else ""
    following = any(rest.strip() for rest in lines[number : number + 3])
    return following and (not previous or previous.endswith(_TERMINAL))


# -- sentences -------------------------------------------------------------------------------

# Every quoted span is bounded in length: an opening mark that is never closed would otherwise
# be scanned to the end of the text from each of its occurrences (quadratic time on hostile text).
# Single quotes double as apostrophes ('we're swamped'), so those phrases may contain them.
_QUOTE_RE = re.compile(
    r'"([^"]{1,300}?)"'
    r"|“([^”]{1,300}?)”"
    r"|„([^“”]{1,300}?)[“”]"
    r"|«\s?([^»]{1,300}?)\s?»"
    r"|`([^`]{1,300}?)`"
    r"|(?<!\w)'((?:[^']|'(?=\w)){1,80}?)'(?!\w)"
    r"|(?<!\w)‘((?:[^’]|’(?=\w)){1,80}?)’(?!\w)"
)
_EMPHASIS_RE = re.compile(r"\*\*|__|(?<!\w)[*_](?=\S)|(?<=\S)[*_](?!\w)")
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+")
# Rules are short; a very long "sentence" is prose, and skipping it keeps the regexes cheap.
_MAX_SENTENCE_CHARS = 400


def _quote_token(i: int) -> str:
    return f"\ue000{i}\ue001"


def block_sentences(block: GuideBlock) -> list[GuideSentence]:
    """The block's sentences, each with the guide line it starts on and its quotes masked."""
    starts, pieces, offset = [], [], 0
    for _, text in block.lines:
        piece = _EMPHASIS_RE.sub("", text)  # "**Never** say" reads as "Never say"
        starts.append(offset)
        pieces.append(piece)
        offset += len(piece) + 1
    joined = " ".join(pieces)
    # Split outside quotes only: "Do: "Hi Maya. I've sent..."" is one sentence.
    shielded = _QUOTE_RE.sub(lambda m: "Q" * len(m.group(0)), joined)
    out, start = [], 0
    for cut in [*(m.end() for m in _SENTENCE_SPLIT_RE.finditer(shielded)), len(joined)]:
        text = " ".join(joined[start:cut].split())
        if text and len(text) <= _MAX_SENTENCE_CHARS:
            line = block.lines[max(0, bisect.bisect_right(starts, start) - 1)][0]
            out.append(_make_sentence(text, line))
        start = cut
    return out


def _make_sentence(text: str, line: int) -> GuideSentence:
    quotes: list[str] = []

    def token(match: re.Match[str]) -> str:
        quotes.append(next(g for g in match.groups() if g is not None).strip())
        return _quote_token(len(quotes) - 1)

    masked = _QUOTE_RE.sub(token, text).replace("’", "'").replace("‘", "'").lower()
    return GuideSentence(text=text, line=line, masked=masked, quotes=quotes)


# -- numbers ---------------------------------------------------------------------------------

_UNITS = [
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"),
    *("eighteen", "nineteen"),
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_NUM = (
    r"(?:\d{1,4}|a single|a hundred|one hundred|"
    rf"(?:{'|'.join(_TENS)})(?:[- ](?:{'|'.join(_UNITS[1:10])}))?|(?:{'|'.join(_UNITS)}))"
)


def _number(words: str) -> int:
    words = words.strip().lower()
    if words.isdigit():
        return int(words)
    if words == "a single":
        return 1
    if words.endswith("hundred"):
        return 100
    parts = re.split(r"[- ]", words)
    value = _TENS.index(parts[0]) * 10 + 20 if parts[0] in _TENS else _UNITS.index(parts[0])
    return value + (_UNITS.index(parts[1]) if len(parts) > 1 else 0)


_GAP = r"(?:\s+[\w-]+){0,2}?\s+"  # up to two words between a number and its noun ("short")
_AT_MOST = (
    r"(?:no more than|not more than|never more than|(?:never|don't|do not) use more than|"
    r"at most|up to|a maximum of|maximum(?: of)?|max\.?|limit(?:ed)? (?:it )?to|only|just)"
)
_UNDER = rf"(?:{_AT_MOST}|under|fewer than|less than|below|within|no longer than|shorter than)"
_AT_LEAST = (
    # "more than", but not "no more than" / "never use more than", which are upper bounds.
    r"(?:at least|(?<!no )(?<!not )(?<!never )(?<!use )more than|over|no fewer than|"
    r"no less than|not less than|"
    r"a minimum of|minimum(?: of)?|longer than)"
)
_NONE_OF = r"(?:no|zero|avoid|avoid using|never use|don't use|do not use|not use|never add)"


def _max_count(masked: str, noun: str | None) -> int | None:
    """The most of `noun` a sentence allows: "no more than one X" -> 1, "no X" / "avoid X" -> 0."""
    tail = rf"{_GAP}(?:{noun})\b" if noun else r"\b"
    match = re.search(rf"\b{_AT_MOST}\s+({_NUM}){tail}", masked)
    if match:
        return _number(match.group(1))
    if noun is None:
        return None
    match = re.search(
        rf"\b({_NUM})\s+(?:{noun})\s+(?:at most|max(?:imum)?|or (?:fewer|less))", masked
    )
    if match:
        return _number(match.group(1))
    return 0 if re.search(rf"\b{_NONE_OF}\s+(?:any\s+)?(?:{noun})\b", masked) else None


# -- the accumulator -------------------------------------------------------------------------


class _Collector:
    """Gathers rules with their sources; a rule stated twice differently keeps the first."""

    def __init__(self) -> None:
        self.rules = BrandRules()
        self.result = RuleExtraction(rules=self.rules)
        # Sets and dicts beside the result's lists keep a long guide linear, not quadratic.
        self._sources: set[RuleSource] = set()
        self._unsure: set[str] = set()
        self._banned: set[str] = set()
        self._terms: dict[str, str] = {}

    def source(self, rule: str, sentence: GuideSentence) -> None:
        entry = RuleSource(rule, sentence.line, sentence.text)
        if entry not in self._sources:
            self._sources.add(entry)
            self.result.sources.append(entry)

    def unsure(self, sentence: GuideSentence) -> None:
        entry = f"line {sentence.line}: {sentence.text}"
        if entry not in self._unsure:
            self._unsure.add(entry)
            self.result.unsure.append(entry)

    def set(
        self, owner: object, attr: str, value: object, rule: str, sentence: GuideSentence
    ) -> bool:
        """Set one field unless the guide already set it to something else (then: not sure)."""
        if isinstance(value, str) and not value.strip():
            return False  # an empty quote ("") is no rule
        if getattr(owner, attr) not in (None, value):
            return False
        setattr(owner, attr, value)
        self.source(rule, sentence)
        return True

    def ban(self, phrase: str, sentence: GuideSentence) -> None:
        phrase = _clean_phrase(phrase)
        if not phrase:
            return
        if rule_key(phrase) not in self._banned:
            self._banned.add(rule_key(phrase))
            self.rules.banned_phrases.append(phrase)
        self.source(f"banned_phrase:{rule_key(phrase)}", sentence)

    def prefer(self, use: str, instead_of: str, sentence: GuideSentence) -> bool:
        """Add a preferred term; False when it is empty or contradicts an earlier one."""
        use, instead_of = _clean_phrase(use), _clean_phrase(instead_of)
        old = rule_key(instead_of)
        if not use or not instead_of or rule_key(use) == old:
            return False
        known = self._terms.get(old)
        if known is not None and known != rule_key(use):
            return False
        if known is None:
            self._terms[old] = rule_key(use)
            self.rules.preferred_terms.append(PreferredTerm(use, instead_of))
        self.source(f"preferred_term:{old}", sentence)
        return True


def _clean_phrase(phrase: str) -> str:
    # A quoted phrase often carries the sentence's punctuation ("Unfortunately," / "ASAP.").
    return " ".join(phrase.split()).strip(" .,;:!?")


# -- context ---------------------------------------------------------------------------------

_Context = Literal["general", "examples", "terms", "never", "never_list", "always", "emoji"]


def _context(heading: str) -> _Context:
    h = heading.lower().replace("’", "'")
    if re.search(r"\bdo'?s?\b.*\bdon'?ts?\b|\bexamples?\b", h):
        return "examples"
    if re.search(r"say this|terminolog|vocabular|word ?list|glossary|preferred (?:words|terms)", h):
        return "terms"
    if re.search(r"\bnever\b|\bavoid|\bdon't\b|\bdo not\b|\bbanned\b|forbidden|off-limits", h):
        listed = re.search(r"\bsay|\bwords?\b|\bphrases?\b|\bterms\b|\bexpressions?\b|banned", h)
        return "never_list" if listed else "never"
    if re.search(r"\balways\b|\bmust\b", h):
        return "always"
    return "emoji" if re.search(r"\bemoji|\bemoticon", h) else "general"


# -- extractors, each: (sentence, context, collector) -> whether it made a rule -------------------

_QUOTES = r"\ue000\d+\ue001(?:\s*(?:,|/|or|and|nor)\s*\ue000\d+\ue001)*"
_EMOJI_NOUN = r"emoji(?:s|es)?|emoticons?|smileys?"
_EXCLAMATION_NOUN = r"exclamation(?:\s+(?:marks?|points?))?|exclamations"


def _quotes_in(sentence: GuideSentence, group: str) -> list[str]:
    return [sentence.quotes[int(i)] for i in re.findall(r"\ue000(\d+)\ue001", group)]


_EXCEPT_RE = re.compile(r"\b(?:except(?: for)?|but|apart from|other than|besides|save for)\b")
# "Emoji: only ☕, and never more than one.": the number ends the sentence, the noun went before.
_TRAILING_MAX_RE = re.compile(
    rf"\b{_AT_MOST}\s+({_NUM})(?:\s+(?:per|in|a|each)\s+(?:repl(?:y|ies)|messages?|"
    r"responses?|answers?))?\s*[.!]?$"
)


def _emoji_rule(s: GuideSentence, ctx: _Context, c: _Collector) -> bool:
    named = re.search(rf"\b(?:{_EMOJI_NOUN})\b", s.masked)
    if not named and ctx != "emoji":
        return False
    count = _max_count(s.masked, _EMOJI_NOUN if named else None)
    if count is None and named:
        trailing = _TRAILING_MAX_RE.search(s.masked)
        count = _number(trailing.group(1)) if trailing else None
    listed = list(dict.fromkeys(find_emoji(s.text)))
    if count == 0 and listed and _EXCEPT_RE.search(s.masked):
        # "No emoji except ☕": not a ban but an allow-list; one of them in a reply at most.
        count = 1
    found = False
    if count is not None:
        found = c.set(c.rules.emoji, "max_per_reply", count, "emoji", s)
    # "only 🫖 or 🍵": the emoji named in a sentence that limits them are the allowed ones.
    limits = re.search(r"\b(?:only|allowed|stick to|limited to)\b", s.masked) or _EXCEPT_RE.search(
        s.masked
    )
    if listed and limits and count != 0 and not c.rules.emoji.allowed:
        c.rules.emoji.allowed = listed
        c.source("emoji", s)
        found = True
    return found


def _exclamation_rule(s: GuideSentence, ctx: _Context, c: _Collector) -> bool:
    if not re.search(rf"\b(?:{_EXCLAMATION_NOUN})\b", s.masked):
        return False
    count = _max_count(s.masked, _EXCLAMATION_NOUN)
    return count is not None and c.set(c.rules, "max_exclamations", count, "exclamations", s)


def _length_rule(s: GuideSentence, ctx: _Context, c: _Collector) -> bool:
    found = False
    for unit in ("words", "sentences"):
        if re.search(rf"\b{unit[:-1]}s?\b", s.masked):
            found |= _length_bounds(s, unit, c)
    return found


def _range(masked: str, noun: str) -> tuple[int | None, int | None]:
    """ "two to four sentences", "20-60 words", "between 2 and 4 sentences"."""
    for match in re.finditer(
        rf"\b(?:between\s+)?({_NUM})\s*(?:to|-|–|—|and|or)\s*({_NUM}){_GAP}{noun}", masked
    ):
        low, high = _number(match.group(1)), _number(match.group(2))
        if low < high:  # "twenty-five words" also reads as 20 to 5
            return low, high
    return None, None


def _length_bounds(s: GuideSentence, unit: str, c: _Collector) -> bool:
    noun = rf"{unit[:-1]}s?\b"
    low, high = _range(s.masked, noun)
    if low is None:
        most = re.search(rf"\b{_UNDER}\s+({_NUM}){_GAP}{noun}", s.masked) or re.search(
            rf"\b({_NUM}){_GAP}{noun}\s+(?:or (?:fewer|less)|max(?:imum)?|at most|tops)\b", s.masked
        )
        least = re.search(rf"\b{_AT_LEAST}\s+({_NUM}){_GAP}{noun}", s.masked) or re.search(
            rf"\b({_NUM}){_GAP}{noun}\s+or more\b", s.masked
        )
        high = _number(most.group(1)) if most else None
        low = _number(least.group(1)) if least else None
    if (low is None and high is None) or (low is not None and high is not None and low > high):
        return False
    if high == 0:  # "under 0 words" cannot be met; it is a typo, not a rule
        return False
    length = c.rules.length
    ok_low = low is None or c.set(length, f"min_{unit}", low, "length", s)
    ok_high = high is None or c.set(length, f"max_{unit}", high, "length", s)
    return ok_low and ok_high


_NEGATIVE_START_RE = re.compile(r"^(?:please\s+)?(?:never|avoid|don't|do not|no)\b")
_REPLY = (
    r"(?:(?:every|each|all|your|the|a|our)\s+)?"
    r"(?:(?:repl(?:y|ies)|messages?|emails?|answers?|responses?|conversations?)\s+)?"
)
_SIGNOFF_RE = re.compile(rf"\bsign[- ]?off\b|\b(?:end|close|finish|sign)\s+{_REPLY}(?:with|by)\b")
_GREETING_RE = re.compile(rf"\b(?:start|begin|open)\s+{_REPLY}(?:with|by saying)\b|\bgreet\b")
_ADDRESS_RE = re.compile(
    r"\b(?:address|call|refer to)\s+(?:the\s+|our\s+|each\s+|every\s+)?"
    r"(?:customers?|clients?|guests?|people|them|everyone|the person)\b"
)
_PLACEHOLDER_RE = re.compile(r"<[^<>]{1,40}>|\[[^\[\]]{1,40}\]|\{+[^{}]{1,40}\}+")
_FIRST_NAME_RE = re.compile(r"\b(?:first|given|their|customer's)\s+name\b")


def _signoff_rule(s: GuideSentence, ctx: _Context, c: _Collector) -> bool:
    if not s.quotes or _NEGATIVE_START_RE.match(s.masked) or not _SIGNOFF_RE.search(s.masked):
        return False
    signoff = s.quotes[0].strip()
    return c.set(c.rules, "required_signoff", signoff, "signoff", s)


def _greeting_rule(s: GuideSentence, ctx: _Context, c: _Collector) -> bool:
    if not s.quotes or _NEGATIVE_START_RE.match(s.masked) or not _GREETING_RE.search(s.masked):
        return False
    plain = [q for q in s.quotes if not _PLACEHOLDER_RE.search(q)]
    address = c.rules.address_customer
    if not c.set(address, "greeting", (plain or s.quotes)[0], "address", s):
        return False
    if len(plain) < len(s.quotes) or _FIRST_NAME_RE.search(s.masked):
        address.allow_first_name = True
    return True


_USE_FIRST_NAME_RE = re.compile(
    r"^(?:(?:always|please)\s+)?(?:use|address|call|greet)\b.*?\b(?:first|given) names?\b"
)


def _address_rule(s: GuideSentence, ctx: _Context, c: _Collector) -> bool:
    if not s.quotes and _USE_FIRST_NAME_RE.match(s.masked):
        # "Use the customer's first name": the name may stand in wherever the customer is named.
        c.rules.address_customer.allow_first_name = True
        c.source("address", s)
        return True
    if not s.quotes or _NEGATIVE_START_RE.match(s.masked) or not _ADDRESS_RE.search(s.masked):
        return False
    address = c.rules.address_customer
    if not c.set(address, "term", _clean_phrase(s.quotes[0]), "address", s):
        return False
    if _FIRST_NAME_RE.search(s.masked):
        address.allow_first_name = True
    return True


_SAY = r"(?:say|use|write|prefer|we say|call it)"
_NOT = r"(?:not|instead of|rather than|over|never)"
_TERM_PATTERNS = (
    # Say "tea parcel", not "package".  /  Use "swap" instead of "exchange".
    re.compile(
        rf"^(?:(?:always|please)\s+)?{_SAY}\s+(?P<use>{_QUOTES})\s*,?\s*\(?{_NOT}\s+(?P<not>{_QUOTES})"
    ),
    # Instead of "package", say "tea parcel".
    re.compile(
        rf"^(?:instead of|rather than|not)\s+(?P<not>{_QUOTES})\s*,?\s*{_SAY}\s+(?P<use>{_QUOTES})"
    ),
    # Don't say "package"; say "tea parcel" (instead).  /  Never "package" — "tea parcel" instead.
    re.compile(
        rf"^(?:don't|do not|never|avoid)\s+(?:(?:say|use|write)(?:ing)?\s+)?(?P<not>{_QUOTES})"
        rf"\s*[,;:—–(-]*\s*(?:(?:say|use|write)\s+(?P<use>{_QUOTES})|(?P<use2>{_QUOTES})\s+instead)"
    ),
)
# Under a "Say this, not that" heading the verb is optional: "tea parcel", not "package".
_TERM_IN_LIST_RE = re.compile(rf"^(?P<use>{_QUOTES})\s*,?\s*\(?{_NOT}\s+(?P<not>{_QUOTES})")
_UNQUOTED_TERM_RE = re.compile(
    rf"^(?:{_SAY}\s+)?(?P<use>[^,;:()]+?)\s*,?\s*\(?{_NOT}\s+(?P<not>[^,;:()]+?)\)?[.!]?$",
    re.IGNORECASE,
)


def _term_rule(s: GuideSentence, ctx: _Context, c: _Collector) -> bool:
    patterns = (*_TERM_PATTERNS, _TERM_IN_LIST_RE) if ctx == "terms" else _TERM_PATTERNS
    for pattern in patterns:
        match = pattern.search(s.masked)
        if match:
            uses = _quotes_in(s, match.group("use") or match.groupdict().get("use2") or "")
            return any([c.prefer(uses[0], old, s) for old in _quotes_in(s, match.group("not"))])
    return not s.quotes and _unquoted_term(s, ctx, c)


def _unquoted_term(s: GuideSentence, ctx: _Context, c: _Collector) -> bool:
    """Use parcel instead of package: taken only where the words are clearly terms.

    That is under a terminology heading, or when each side is a single word; "Use simple words
    instead of jargon" would otherwise become a rule against the word "jargon".
    """
    match = _UNQUOTED_TERM_RE.match(s.text.rstrip(".!").replace("’", "'"))
    has_verb = re.match(rf"^{_SAY}\s", s.masked) is not None
    if not match or not (has_verb or ctx == "terms"):
        return False
    use, instead = match.group("use"), match.group("not")
    olds = [o for o in re.split(r"\s*(?:/|\bor\b)\s*", instead) if o]
    words = max(len(use.split()), *(len(o.split()) for o in olds))
    if words > (4 if ctx == "terms" else 1):
        return False
    return any([c.prefer(use, old, s) for old in olds])


_BAN_LEAD = (
    r"^(?:please\s+)?(?:never|avoid|don't|do not|no)\b\s*"
    r"(?:(?:say(?:ing)?|us(?:e|ing)|writ(?:e|ing)|typ(?:e|ing)|"
    r"(?:open|start|begin|end|close|sign off|reply|respond)(?:ing)?\s+with|"
    r"(?:the\s+)?(?:words?|phrases?|expressions?|terms?)(?:\s+(?:like|such as))?)\s*)*:?\s*"
)
_BAN_RE = re.compile(rf"{_BAN_LEAD}(?P<phrases>{_QUOTES})(?!.*\binstead\b)")
_BAN_LIST_RE = re.compile(
    r"^(?:please\s+)?(?:never|avoid|don't|do not)\s+"
    r"(?:(?:say(?:ing)?|us(?:e|ing)|writ(?:e|ing))(?:\s+(?:these|the following))?"
    r"(?:\s+(?:words?|phrases?|expressions?))?|(?:these|the following|the)?\s*"
    r"(?:words?|phrases?|expressions?))\s*:\s*[^\ue000]+$"
)
_BARE_QUOTES_RE = re.compile(rf"^(?P<phrases>{_QUOTES})\s*[.!]?$")


def _banned_rule(s: GuideSentence, ctx: _Context, c: _Collector) -> bool:
    match = _BAN_RE.match(s.masked)
    if match is None and ctx in ("never", "never_list"):
        match = _BARE_QUOTES_RE.match(s.masked)
    if match:
        for phrase in _quotes_in(s, match.group("phrases")):
            c.ban(phrase, s)
        return True
    # "Never say: per our policy, valued customer" and bare bullets under "Words we never use":
    # the phrases are delimited by the colon, commas and bullets even without quotes.
    listed = _BAN_LIST_RE.match(s.masked)
    if listed:
        items = [i for i in re.split(r"\s*(?:[,;]|\bor\b)\s*", s.text.split(":", 1)[1]) if i]
    elif ctx == "never_list" and not s.quotes and not _DIRECTIVE_RE.match(s.masked):
        items = [s.text]
    else:
        return False
    items = [_clean_phrase(i) for i in items]
    if not items or any(len(i.split()) > 6 or not i for i in items):
        return False
    for item in items:
        c.ban(item, s)
    return True


_EXAMPLE_RE = re.compile(
    r"^(?P<kind>do|don't|do not|dont|good|bad|right|wrong|better|worse|example|e\.g\.)"
    r"\s*[:—–-]\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
_EXAMPLE_KINDS = {"do": "do", "good": "do", "right": "do", "better": "do"}


def _example(block: GuideBlock, ctx: _Context, c: _Collector) -> bool:
    text = " ".join(block.text.replace("’", "'").split())
    match = _EXAMPLE_RE.match(text)
    if match is None or (ctx != "examples" and not _QUOTE_RE.match(match.group("rest"))):
        return False
    kind = match.group("kind").lower()
    rest = match.group("rest").strip()
    quoted = _QUOTE_RE.fullmatch(rest)
    if quoted:
        rest = next(g for g in quoted.groups() if g is not None)
    example_kind = _EXAMPLE_KINDS.get(kind, "example" if kind.startswith(("ex", "e.")) else "dont")
    c.result.examples.append(GuideExample(example_kind, rest, block.lines[0][0]))
    return True


_NOUN_EXTRACTORS = (_emoji_rule, _exclamation_rule, _length_rule)
_PHRASE_EXTRACTORS = (_signoff_rule, _greeting_rule, _address_rule, _term_rule, _banned_rule)
_DIRECTIVE_RE = re.compile(
    r"^(?:please\s+)?(?:always|never|avoid|don't|do not|must|should|use|say|write|keep|start|"
    r"begin|end|close|sign|address|call|greet|no|only|limit|include|offer|thank|mention|reply|"
    r"respond|ask|be|stay|make|refer|spell|capitali[sz]e|put|add|give|try|remember|stick)\b"
)


def _extract_sentence(s: GuideSentence, ctx: _Context, c: _Collector, in_list: bool) -> None:
    # A sentence can state several counted rules ("no emoji and at most one exclamation mark"),
    # but a phrase rule claims the sentence: its quotes mean one thing.
    found = False
    for extractor in _NOUN_EXTRACTORS:
        found |= extractor(s, ctx, c)
    if not found:
        found = any(extractor(s, ctx, c) for extractor in _PHRASE_EXTRACTORS)
    rule_section = in_list and ctx in ("never", "never_list", "always", "terms", "emoji")
    # "Emoji are fine in moderation": about emoji, so a rule of a kind, but no number to check.
    about_emoji = re.search(rf"\b(?:{_EMOJI_NOUN})\b", s.masked) is not None
    if not found and (_DIRECTIVE_RE.match(s.masked) or rule_section or about_emoji):
        c.unsure(s)


def _rows(block: GuideBlock, ctx: _Context, c: _Collector) -> None:
    """A "| Say | Not |" table under a terminology heading: one preferred term per row."""
    cells = [cell.strip() for cell in block.text.strip().strip("|").split("|")]
    sentence = _make_sentence(block.text, block.lines[0][0])
    taken = ctx == "terms" and len(cells) >= 2 and c.prefer(cells[0], cells[1], sentence)
    if not taken and ctx in ("terms", "never", "never_list", "always"):
        c.unsure(sentence)


def extract_rules(guide: StyleGuide) -> RuleExtraction:
    """Find the guide's checkable rules; everything that reads like a rule but is not exact
    enough to check goes to `unsure`. Headings give context: quoted bullets under "Never" are
    banned phrases, "X, not Y" under "Say this, not that" are preferred terms, and "Do:"/"Don't:"
    lines are examples, never rules."""
    collector = _Collector()
    ctx: _Context = "general"
    for block in guide_blocks(guide.text):
        if block.kind == "heading":
            ctx = _context(block.text)
        elif block.kind == "row":
            _rows(block, ctx, collector)
        elif block.kind != "header_row" and not _example(block, ctx, collector):
            for sentence in block_sentences(block):
                _extract_sentence(sentence, ctx, collector, block.kind == "bullet")
    return collector.result
