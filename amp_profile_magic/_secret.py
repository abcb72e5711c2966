"""Secret values that never show themselves (a key; a URL with a password), and the traitlets types holding them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from traitlets import TraitError, TraitType

__all__ = ["MASK", "Secret", "SecretTrait", "SecretURL", "SecretURLTrait", "mask_url", "redact"]

MASK = "********"


class Secret:
    """A string that prints as asterisks; only :meth:`reveal` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself, for the one place that must send it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __repr__(self) -> str:
        return f"<secret {MASK}>" if self._value else "<secret unset>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        # Immutable, and traitlets deep-copies Config objects (which may hold one) when a Configurable is built.
        return self

    def __reduce__(self) -> Any:
        # Pickling (e.g. a kernel's variable inspector or a cache) must not carry the key either.
        raise TypeError("Secret values cannot be pickled")


class SecretTrait(TraitType[Secret, Secret | str | None]):
    """A trait that stores a :class:`Secret`; strings assigned to it are wrapped on the way in.

    ``%config`` prints a trait's current value with ``%r``; wrapping means it prints asterisks.
    """

    info_text = "a secret string"

    def __init__(self, *, env: str, help: str) -> None:
        self._env = env
        super().__init__(help=help)

    def make_dynamic_default(self) -> Secret:
        # Stripped like an assigned key: a key file or .env line often ends in a newline.
        return Secret(os.getenv(self._env, "").strip())

    def validate(self, obj: Any, value: Any) -> Secret:
        if isinstance(value, Secret):
            return value
        if value is None:
            return Secret("")
        if isinstance(value, str):
            return Secret(value.strip())
        # Not self.error(): traitlets' message shows the rejected value, and a key given as bytes is still a key.
        owner = f" of a {type(obj).__name__} instance" if obj is not None else ""
        kind = type(value).__name__
        raise TraitError(f"The '{self.name}' trait{owner} expected a secret string, not a value of type {kind}.")

    def default_value_repr(self) -> str:
        return f"${self._env} or unset"


def redact(text: str, secret: str, *, mask: str = MASK) -> str:
    """``text`` with ``secret``, and its JSON-escaped spelling, replaced by ``mask``."""
    if not secret:
        return text
    for spelling in {secret, json.dumps(secret)[1:-1]}:
        text = text.replace(spelling, mask)
    return text


def mask_url(url: str, *, mask: str = MASK) -> str:
    """``url`` with its password (``scheme://user:PASSWORD@host``, or a ``password=`` query value) masked."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        parts, password = None, None
    if parts is None or (not password and "@" in url and not parts.netloc):
        # Not a URL urlsplit can take apart (':pw@host', 'redis//:pw@host'): whatever precedes an '@' may be one.
        return f"{mask}{url[url.rindex('@') :]}" if "@" in url else url
    if not password and "password" not in parts.query.lower():
        return url  # unchanged: urlunsplit would respell "sqlite:///path" as "sqlite:/path"
    netloc = parts.netloc
    if password:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{mask}@{hostport}"
    query = parts.query
    if "password" in query.lower():
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(name, mask if name.lower() == "password" else value) for name, value in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class SecretURL:
    """A URL that may carry a password: prints with the password masked; :meth:`reveal` gives the URL itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the URL itself, password included, for the one place that connects."""
        return self._value

    @property
    def masked(self) -> str:
        """The URL with any password replaced by asterisks, for listings, messages and logs."""
        return mask_url(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretURL) and other._value == self._value

    def __hash__(self) -> int:
        return hash((SecretURL, self._value))

    def __repr__(self) -> str:
        return repr(self.masked)

    def __str__(self) -> str:
        return self.masked

    def __format__(self, spec: str) -> str:
        return format(self.masked, spec)

    def __copy__(self) -> SecretURL:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SecretURL:
        return self

    def __reduce__(self) -> Any:
        raise TypeError("SecretURL values cannot be pickled")


class _UncheckedURL(SecretURL):
    """A trait's default taken from the environment, which its owner checks (:meth:`SecretURLTrait.problem`) on use."""

    __slots__ = ()


class SecretURLTrait(TraitType[SecretURL, SecretURL | str]):
    """A trait holding a :class:`SecretURL`: ``%config`` listings print it with the password masked.

    ``check`` validates the URL's text (raising ``ValueError`` with a message that must not quote the password);
    the default is ``$env``, else ``default()``.
    """

    info_text = "a URL"

    def __init__(self, *, env: str, default: Callable[[], str], check: Callable[[str], None], help: str) -> None:
        self._env = env
        self._default = default
        self._check = check
        super().__init__(help=help)

    def make_dynamic_default(self) -> SecretURL:
        # Not validated here: reading the setting (a %config listing, the form) must not fail on a mistyped
        # $env, so its owner checks it with problem() before use and reports it as its own error. os.getenv, not
        # os.environ: a Verbose traceback through a line naming os.environ prints the whole environment.
        return _UncheckedURL(os.getenv(self._env, "").strip() or self._default())

    def validate(self, obj: Any, value: Any) -> SecretURL:
        if type(value) is _UncheckedURL:
            return value  # the default, from the environment: checked on use (see make_dynamic_default)
        if isinstance(value, SecretURL):
            secret = value
        elif isinstance(value, str):
            secret = SecretURL(value.strip())
        else:
            raise TraitError(
                f"The '{self.name}' trait expected a URL string, not a value of type {type(value).__name__}."
            )
        del value  # from here on only the masked form is a local of this frame
        problem = self.problem(secret)
        if problem is not None:
            raise TraitError(f"{self.name}: {problem}")
        return secret

    def problem(self, secret: SecretURL) -> str | None:
        """What ``check`` says is wrong with the URL, or None; its traceback (frames holding the URL) goes with it."""
        try:
            self._check(secret.reveal())
        except ValueError as error:
            return str(error)
        return None

    def default_value_repr(self) -> str:
        return f"${self._env} or the default"
