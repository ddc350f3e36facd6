"""miniyaml.py - the YAML subset that training configs use (MSST's configs/*.yaml),
read with the Python standard library only, never constructing arbitrary objects.

Supported: block mappings and block sequences (a sequence may sit at its key's
indentation), flow sequences `[a, b]` and flow mappings `{a: 1}` (one level of
nesting, may span lines), plain scalars resolved as PyYAML's YAML 1.1 resolver
does (null ~, bools true/yes/on/..., ints incl. 0x/0o/0b, floats that need a
dot or .inf/.nan), single- and double-quoted strings, comments, and the tag
`!!python/tuple` (a tuple), `!!str`, `!!int`, `!!float`.  Anything else
(anchors, aliases, block scalars |/>, other tags, documents ---) is refused
with YAMLError naming the line.

  load(text) -> dict     load_file(path) -> dict
"""
import re

__all__ = ["YAMLError", "load", "load_file"]


class YAMLError(Exception):
    pass


_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"yes": True, "Yes": True, "YES": True, "true": True, "True": True, "TRUE": True,
         "on": True, "On": True, "ON": True, "no": False, "No": False, "NO": False,
         "false": False, "False": False, "FALSE": False, "off": False, "Off": False,
         "OFF": False}
_INT = re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?"
                    r"|\.[0-9_]+(?:[eE][-+][0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")

_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")


def _plain(s, lineno):
    """A plain scalar as PyYAML resolves it."""
    if _NULL.match(s):
        return None
    if s in _BOOL:
        return _BOOL[s]
    if _INT.match(s):
        t = s.replace("_", "")
        sign = -1 if t[0] == "-" else 1
        if t[0] in "+-":
            t = t[1:]
        if t == "0":
            return 0
        if t.startswith("0b"):
            return sign * int(t[2:], 2)
        if t.startswith("0x"):
            return sign * int(t[2:], 16)
        if t[0] == "0":
            return sign * int(t, 8)
        return sign * int(t)
    if _FLOAT.match(s):
        t = s.replace("_", "").lower()
        if t.endswith(".inf"):
            return float("-inf") if t[0] == "-" else float("inf")
        if t.endswith(".nan"):
            return float("nan")
        return float(t)
    if _SEXAGESIMAL.match(s):
        raise YAMLError("line %d: sexagesimal number %r is not supported" % (lineno, s))
    if s[0] in "&*!|>%@`":
        raise YAMLError("line %d: unsupported YAML syntax %r" % (lineno, s))
    return s


def _quoted(s, i, lineno):
    """Parse the quoted string starting at s[i]; returns (value, index after it)."""
    q = s[i]
    out = []
    j = i + 1
    while j < len(s):
        c = s[j]
        if q == "'":
            if c == "'":
                if j + 1 < len(s) and s[j + 1] == "'":
                    out.append("'")
                    j += 2
                    continue
                return "".join(out), j + 1
            out.append(c)
            j += 1
            continue
        if c == '"':
            return "".join(out), j + 1
        if c == "\\":
            if j + 1 >= len(s):
                break
            e = s[j + 1]
            simple = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "/": "/", "0": "\0",
                      "r": "\r", " ": " ", "a": "\a", "b": "\b", "e": "\x1b", "f": "\f",
                      "v": "\v"}
            if e in simple:
                out.append(simple[e])
                j += 2
                continue
            n = {"x": 2, "u": 4, "U": 8}.get(e)
            if n and re.match(r"^[0-9a-fA-F]{%d}$" % n, s[j + 2:j + 2 + n]):
                out.append(chr(int(s[j + 2:j + 2 + n], 16)))
                j += 2 + n
                continue
            raise YAMLError("line %d: unsupported escape \\%s" % (lineno, e))
        out.append(c)
        j += 1
    raise YAMLError("line %d: unterminated quoted string" % lineno)


def _strip_comment(s):
    """s without a trailing comment (a # at the start or after a blank, outside quotes)."""
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in "'\"" and (i == 0 or s[i - 1] in " \t[{,:-"):
            q = c
            i += 1
            while i < n:
                if s[i] == "\\" and q == '"':
                    i += 2
                    continue
                if s[i] == q:
                    if q == "'" and i + 1 < n and s[i + 1] == "'":
                        i += 2
                        continue
                    break
                i += 1
            i += 1
            continue
        if c == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
        i += 1
    return s.rstrip()


class _Flow:
    """Parser for one flow collection ([...] or {...}) held in a string."""

    def __init__(self, s, lineno):
        self.s, self.i, self.lineno = s, 0, lineno

    def err(self, what):
        raise YAMLError("line %d: %s in flow collection %r" % (self.lineno, what, self.s))

    def ws(self):
        while self.i < len(self.s) and self.s[self.i] in " \t\n":
            self.i += 1

    def value(self, depth=0):
        self.ws()
        if self.i >= len(self.s):
            self.err("unexpected end")
        c = self.s[self.i]
        if c in "[{":
            if depth > 8:
                self.err("nested too deeply")
            close = "]" if c == "[" else "}"
            self.i += 1
            items = [] if c == "[" else {}
            self.ws()
            if self.i < len(self.s) and self.s[self.i] == close:
                self.i += 1
                return items
            while True:
                if c == "[":
                    items.append(self.value(depth + 1))
                else:
                    k = self.value(depth + 1)
                    self.ws()
                    if self.i >= len(self.s) or self.s[self.i] != ":":
                        self.err("expected ':'")
                    self.i += 1
                    items[k] = self.value(depth + 1)
                self.ws()
                if self.i < len(self.s) and self.s[self.i] == ",":
                    self.i += 1
                    self.ws()
                    if self.i < len(self.s) and self.s[self.i] == close:
                        self.i += 1
                        return items
                    continue
                if self.i < len(self.s) and self.s[self.i] == close:
                    self.i += 1
                    return items
                self.err("expected ',' or '%s'" % close)
        if c in "'\"":
            v, self.i = _quoted(self.s, self.i, self.lineno)
            return v
        j = self.i
        while j < len(self.s) and self.s[j] not in ",]}" and not (
                self.s[j] == ":" and (j + 1 == len(self.s) or self.s[j + 1] in " ,]}")):
            j += 1
        tok = self.s[self.i:j].strip()
        self.i = j
        return _plain(tok, self.lineno)


def _scalar_or_flow(text, lineno):
    text = text.strip()
    if text.startswith(("[", "{")):
        f = _Flow(text, lineno)
        v = f.value()
        f.ws()
        if f.i != len(text):
            raise YAMLError("line %d: trailing text after flow collection" % lineno)
        return v
    if text[:1] in ("'", '"'):
        v, j = _quoted(text, 0, lineno)
        if text[j:].strip():
            raise YAMLError("line %d: trailing text after quoted string" % lineno)
        return v
    return _plain(text, lineno)


_TAGS = ("!!python/tuple", "!!str", "!!int", "!!float")


def _apply_tag(tag, v, lineno):
    if tag is None:
        return v
    if tag == "!!python/tuple":
        if not isinstance(v, list):
            raise YAMLError("line %d: !!python/tuple needs a sequence" % lineno)
        return tuple(v)
    try:
        if tag == "!!str":
            return v if isinstance(v, str) else ("" if v is None else str(v))
        if tag == "!!int":
            return int(v)
        return float(v)
    except (TypeError, ValueError):
        raise YAMLError("line %d: value %r does not fit %s" % (lineno, v, tag))


def _split_tag(text, lineno):
    """(tag or None, rest) of a value text."""
    if text.startswith("!"):
        tag, _, rest = text.partition(" ")
        if tag not in _TAGS:
            raise YAMLError("line %d: unsupported tag %s" % (lineno, tag))
        return tag, rest.strip()
    return None, text


_KEY = re.compile(r"""^(?:'(?:[^']|'')*'|"(?:[^"\\]|\\.)*"|[^\s'"#\-?:,\[\]{}][^#]*?|-[^\s#][^#]*?)\s*:(?:\s|$)""")


class _Block:
    def __init__(self, text):
        self.lines = []                      # (lineno, indent, content)
        raw = text.split("\n")
        k = 0
        while k < len(raw):
            line = raw[k].rstrip("\r")
            k += 1
            if "\t" in line[:len(line) - len(line.lstrip())]:
                raise YAMLError("line %d: tab in indentation" % k)
            body = _strip_comment(line)
            if not body.strip():
                continue
            if body.strip() in ("---", "...") and not line.startswith(" "):
                raise YAMLError("line %d: multi-document YAML is not supported" % k)
            ind = len(body) - len(body.lstrip(" "))
            content = body.strip()
            # a flow collection may continue over several lines: join until balanced
            start = k
            while _unbalanced(content) and k < len(raw):
                more = _strip_comment(raw[k].rstrip("\r")).strip()
                k += 1
                content += " " + more
            if _unbalanced(content):
                raise YAMLError("line %d: unclosed flow collection" % start)
            self.lines.append((start, ind, content))
        self.pos = 0

    def peek(self):
        return self.lines[self.pos] if self.pos < len(self.lines) else None

    def node(self, indent, lineno):
        """The block node whose lines are indented >= indent (a sequence may sit at indent)."""
        nxt = self.peek()
        if nxt is None or nxt[1] < indent:
            return None
        if nxt[2] == "-" or nxt[2].startswith("- "):
            return self.seq(nxt[1])
        return self.mapping(nxt[1])

    def value_after(self, rest, ind, lineno, seq_ok_at):
        """The value of `key: rest` / `- rest` whose own line is indented `ind`."""
        tag, rest = _split_tag(rest, lineno)
        if rest:
            return _apply_tag(tag, _scalar_or_flow(rest, lineno), lineno)
        nxt = self.peek()
        if tag is None and nxt is not None and nxt[1] > ind and nxt[2].startswith("!"):
            self.pos += 1                    # the tag on a line of its own, the node below
            return self.value_after(nxt[2], ind, nxt[0], nxt[1])
        if nxt is not None and (nxt[1] > ind or nxt[1] == seq_ok_at and
                                (nxt[2] == "-" or nxt[2].startswith("- "))):
            return _apply_tag(tag, self.node(nxt[1], lineno), lineno)
        return _apply_tag(tag, None if tag != "!!python/tuple" else [], lineno)

    def mapping(self, indent):
        out = {}
        while True:
            cur = self.peek()
            if cur is None or cur[1] < indent:
                return out
            lineno, ind, content = cur
            if ind > indent:
                raise YAMLError("line %d: unexpected indentation" % lineno)
            if content == "-" or content.startswith("- "):
                if not out:
                    raise YAMLError("line %d: sequence item where a mapping key belongs" % lineno)
                return out
            m = _KEY.match(content)
            if not m:
                raise YAMLError("line %d: expected 'key: value', got %r" % (lineno, content))
            keytext = m.group(0).rstrip()[:-1].rstrip()
            key = _scalar_or_flow(keytext, lineno)
            if isinstance(key, (list, dict)):
                raise YAMLError("line %d: unsupported complex key" % lineno)
            self.pos += 1
            out[key] = self.value_after(content[m.end():].strip(), ind, lineno, ind)

    def seq(self, indent):
        out = []
        while True:
            cur = self.peek()
            if cur is None or cur[1] < indent:
                return out
            lineno, ind, content = cur
            if ind > indent:
                raise YAMLError("line %d: unexpected indentation" % lineno)
            if not (content == "-" or content.startswith("- ")):
                return out
            rest = content[1:].strip()
            if rest == "-" or rest.startswith("- "):
                # "- - item": a sequence nested in the item
                sub = ind + (len(content) - len(rest))
                self.lines[self.pos] = (lineno, sub, rest)
                out.append(self.seq(sub))
                continue
            if rest and _KEY.match(rest) and not rest.startswith(("[", "{", "'", '"')):
                # "- key: value": a mapping whose first key sits after the dash
                sub = ind + (len(content) - len(rest))
                self.lines[self.pos] = (lineno, sub, rest)
                out.append(self.mapping(sub))
                continue
            self.pos += 1
            out.append(self.value_after(rest, ind, lineno, -1))


def _unbalanced(content):
    depth, i, n = 0, 0, len(content)
    body = content
    m = _KEY.match(content)
    if m:
        body = content[m.end():]
    elif content.startswith("- "):
        body = content[2:]
    body = body.strip()
    if body.startswith("!"):
        body = body.partition(" ")[2].strip()
    if not body.startswith(("[", "{")):
        return False
    n = len(body)
    while i < n:
        c = body[i]
        if c in "'\"":
            try:
                _, i = _quoted(body, i, 0)
            except YAMLError:
                return True
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return depth > 0


def load(text):
    b = _Block(text)
    if not b.lines:
        return None
    first = b.lines[0]
    if first[2].startswith(("[", "{")) or not _KEY.match(first[2]):
        raise YAMLError("line %d: the document must be a mapping" % first[0])
    v = b.mapping(first[1])
    if b.peek() is not None:
        raise YAMLError("line %d: unexpected indentation or content" % b.peek()[0])
    return v


def load_file(path):
    with open(path, "r", encoding="utf-8") as f:
        return load(f.read())
