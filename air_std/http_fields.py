"""The header fields of one HTTP message, looked up by name in constant time.

Used by the proxy's connection threads ("air-proxy-conn-N") for a browser's
request head (request_head) and for the app's response head
(upstream_response); no state beyond the message.

Why not http.client's HTTPMessage as it is: it is an email message. Each
lookup lower-cases and sanitizes every field in turn, and http.client fills it
through email's MIME feed parser. The proxy looks up a dozen fields of two
heads per request, and all that was about a third of the CPU a forwarded
request cost. `Fields` is still an HTTPMessage (http.client's getheader() and
getheaders() read it, and so may any code that expects one), with its fields
kept where HTTPMessage keeps them and an index by lower-cased name beside them.
Values are stored as read (latin-1 text, whitespace around them stripped).
"""

import http.client


class Fields(http.client.HTTPMessage):
    """Header fields in the order they came, with lookups by name that do
    not scan the list."""

    def __init__(self):
        super().__init__()
        self._index = {}  # lower-cased name -> its values, in order

    def add(self, name, value):
        """Append one field (a name may come several times)."""
        self._headers.append((name, value))
        self._index.setdefault(name.lower(), []).append(value)

    # as in email's Message, assigning to a name appends a field
    __setitem__ = add

    def __delitem__(self, name):
        key = name.lower()
        if self._index.pop(key, None) is not None:
            self._headers = [(k, v) for k, v in self._headers if k.lower() != key]

    def set_raw(self, name, value):
        self.add(name, value)

    def _reindex(self):
        self._index = {}
        for name, value in self._headers:
            self._index.setdefault(name.lower(), []).append(value)

    def get(self, name, failobj=None):
        """The first value of `name`, or failobj."""
        values = self._index.get(name.lower())
        return values[0] if values else failobj

    def __getitem__(self, name):
        return self.get(name)

    def get_all(self, name, failobj=None):
        """Every value of `name` in order, or failobj when there is none."""
        values = self._index.get(name.lower())
        return list(values) if values else failobj

    def __contains__(self, name):
        return name.lower() in self._index

    def keys(self):
        return [name for name, _ in self._headers]

    def values(self):
        return [value for _, value in self._headers]

    def items(self):
        return list(self._headers)

    def __len__(self):
        return len(self._headers)

    def __iter__(self):
        return iter(self.keys())


def _then_reindex(name):
    inherited = getattr(http.client.HTTPMessage, name)

    def method(self, *args, **kwargs):
        result = inherited(self, *args, **kwargs)
        self._reindex()
        return result
    method.__name__ = name
    return method


# email's Message methods that edit the list of fields in place: the index follows them
for _name in ("replace_header", "set_param", "del_param", "set_boundary"):
    setattr(Fields, _name, _then_reindex(_name))
