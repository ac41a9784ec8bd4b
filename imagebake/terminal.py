"""Text from the cluster, made safe for the laptop's terminal.

Whatever a node, its agent or Disco produced (command output, host and job names, agent
fields, error replies quoted in our messages) is shown through safe_text before it is
printed: a terminal obeys control characters, so ESC could retitle the window, clear or
rewrite the screen (or on some terminals answer back into the input), CR overwrite a
line, BEL ring. They are shown as visible escapes instead, as Python writes them
(`\\x1b`, `\\r`, `\\u202e`). `--json` output needs nothing: json.dumps escapes them itself.

    print(safe_text(remote_output))          # tabs and newlines stay line structure
    safe_text(host_name, one_line=True)      # a field: no line of its own either
    render(safe_fields(report))              # every string of a reply, keys included
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# C0 and C1 controls and DEL (Cc), format characters such as the bidi overrides that
# reorder what is shown (Cf), lone surrogates from undecodable bytes (Cs), and the
# Unicode line and paragraph separators (Zl, Zp)
ESCAPED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_PLAIN = re.compile(r"[\t\n\x20-\x7e]*\Z")  # the common case: nothing to look at


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}" if char not in "\t\n\r" else repr(char)[1:-1]
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe_text(text: Any, one_line: bool = False) -> str:
    """TEXT with every control character shown as a visible escape; tabs and newlines
    (and CRLF, as a newline) are kept unless ONE_LINE. Escaping twice changes nothing
    more: the escapes are printable."""
    text = text if isinstance(text, str) else str(text)
    keep = "" if one_line else "\t\n"
    if not one_line:
        text = text.replace("\r\n", "\n")
    if keep and _PLAIN.match(text):
        return text
    return "".join(_escape(c) if c not in keep and unicodedata.category(c) in ESCAPED else c
                   for c in text)


def safe_fields(value: Any) -> Any:
    """VALUE (a reply: dicts, lists, strings, numbers) with every string, keys included,
    made safe as one line: a field can neither steer the terminal nor forge a line."""
    if isinstance(value, str):
        return safe_text(value, one_line=True)
    if isinstance(value, dict):
        return {safe_fields(k): safe_fields(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_fields(v) for v in value]
    return value
