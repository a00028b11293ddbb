"""``optitop export --web-config FILE``: TLS and basic auth in Prometheus's own web-config format.

The file is the one node_exporter and Prometheus itself read (exporter-toolkit's ``web-config.yml``), so a
fleet that already secures its exporters reuses its files and its bcrypt hashes::

    tls_server_config:
      cert_file: server.crt        # relative paths are relative to this file, as in exporter-toolkit
      key_file: server.key
      client_ca_file: ca.crt       # optional: with client_auth_type, ask scrapers for a certificate
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12           # optional: TLS10 … TLS13
    basic_auth_users:
      prometheus: $2y$10$…         # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

Unknown keys are an error, as they are for exporter-toolkit (a typo must not silently turn TLS off); the
toolkit's Go-only tuning keys (``cipher_suites``, ``curve_preferences``, ``http_server_config`` …) are
refused with a line saying so rather than ignored. PyYAML reads the file and bcrypt checks the hashes: both
are the optional ``web`` extra, imported only when this option is used, and missing ones are named in a
one-line error. Every problem is a ``WebConfigError`` whose message is one line.
"""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: exporter-toolkit's names for TLS versions.
TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
#: exporter-toolkit's client_auth_type values -> what the SSL context asks of the client.
CLIENT_AUTH: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"}
#: Keys exporter-toolkit knows that have no counterpart in Python's ssl module or here.
UNSUPPORTED_KEYS = {
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
    "cert",
    "key",
    "http_server_config",
    "rate_limit",
}
TOP_KEYS = {"tls_server_config", "basic_auth_users"}
#: A bcrypt hash as htpasswd and Go's bcrypt write it.
BCRYPT_HASH = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")
#: Credentials that passed, remembered (by a digest, never in clear) so a scrape every second does not pay
#: bcrypt's ~80 ms each time; exporter-toolkit caches the same way.
AUTH_CACHE_MAX = 256
#: The most bytes read from a web-config file (it is a few lines; a FIFO or /dev/zero must not hang us).
MAX_FILE_BYTES = 1 << 20


class WebConfigError(ValueError):
    """The web-config file cannot be used; the message is one line naming the file and the problem."""


@dataclass(frozen=True)
class WebConfig:
    """What the exporter needs from the file.

    Attributes:
        ssl_context: the server-side TLS context, or None to serve plain HTTP.
        users: user name -> bcrypt hash; empty when no basic auth is asked for.
    """

    ssl_context: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)


def load_web_config(path: str) -> WebConfig:
    """Read and check ``path``; raises WebConfigError with a one-line reason."""
    doc = _read_yaml(path)
    base = Path(path).resolve().parent
    if doc is None:
        return WebConfig()  # an empty file is a valid web-config that asks for nothing (as in the toolkit)
    if not isinstance(doc, dict):
        raise WebConfigError(f"--web-config {path}: expected a mapping at the top, got {type(doc).__name__}")
    _check_keys(path, "", doc, TOP_KEYS)
    tls = doc.get("tls_server_config")
    users = doc.get("basic_auth_users")
    context = _tls_context(path, base, tls) if tls is not None else None
    return WebConfig(context, _users(path, users) if users is not None else {})


def _read_yaml(path: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise WebConfigError("--web-config needs PyYAML: pip install 'optitop[web]'") from None
    file = Path(path)
    try:
        if not file.is_file():
            raise WebConfigError(f"--web-config {path}: not a regular file")
        with file.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise WebConfigError(f"--web-config {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise WebConfigError(f"--web-config {path}: larger than {MAX_FILE_BYTES >> 20} MiB: not a web-config")
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise WebConfigError(f"--web-config {path}: not valid YAML{where}: {problem}") from None


def _check_keys(path: str, section: str, doc: dict[Any, Any], known: set[str]) -> None:
    where = f"{section}." if section else ""
    for key in doc:
        if key in UNSUPPORTED_KEYS:
            raise WebConfigError(f"--web-config {path}: {where}{key} is not supported by optitop")
        if key not in known:
            raise WebConfigError(f"--web-config {path}: unknown key {where}{key!r:.60}")


def _text(path: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"--web-config {path}: tls_server_config.{key} must be a non-empty string")
    return value


def _tls_context(path: str, base: Path, tls: Any) -> ssl.SSLContext:
    if not isinstance(tls, dict):
        raise WebConfigError(f"--web-config {path}: tls_server_config must be a mapping")
    _check_keys(path, "tls_server_config", tls, TLS_KEYS)
    for key in ("cert_file", "key_file"):
        if key not in tls:
            raise WebConfigError(f"--web-config {path}: tls_server_config.{key} is missing")
    cert = base / _text(path, "cert_file", tls["cert_file"])
    key_path = base / _text(path, "key_file", tls["key_file"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key_path)
    except (OSError, ssl.SSLError) as exc:
        what = f"{_shown(cert)} / {_shown(key_path)}"
        raise WebConfigError(f"--web-config {path}: cannot load {what}: {_ssl_reason(exc)}") from None
    auth = tls.get("client_auth_type", "NoClientCert")
    if auth not in CLIENT_AUTH:
        choices = ", ".join(CLIENT_AUTH)
        raise WebConfigError(f"--web-config {path}: client_auth_type {auth!s:.40} is not one of {choices}")
    context.verify_mode = CLIENT_AUTH[auth]
    if "client_ca_file" in tls:
        ca = base / _text(path, "client_ca_file", tls["client_ca_file"])
        try:
            context.load_verify_locations(ca)
        except (OSError, ssl.SSLError) as exc:
            what = f"client_ca_file {_shown(ca)}"
            raise WebConfigError(f"--web-config {path}: cannot load {what}: {_ssl_reason(exc)}") from None
    elif context.verify_mode != ssl.CERT_NONE:
        raise WebConfigError(f"--web-config {path}: client_auth_type {auth} needs client_ca_file")
    for name, attr in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
        if name in tls:
            if tls[name] not in TLS_VERSIONS:
                raise WebConfigError(f"--web-config {path}: {name} must be one of {', '.join(TLS_VERSIONS)}")
            setattr(context, attr, TLS_VERSIONS[tls[name]])
    return context


def _shown(path: Path) -> str:
    """A path from the file as printable text (an escape sequence in it must not reach the terminal)."""
    text = str(path)
    return text if text.isprintable() else ascii(text)


def _ssl_reason(exc: OSError) -> str:
    """Words for a failed load: OpenSSL's codes ("[SSL] PEM lib") say little to a person."""
    if isinstance(exc, ssl.SSLError):
        return "not PEM, or the key does not match the certificate" + (f" ({exc.reason})" if exc.reason else "")
    return exc.strerror or str(exc)


def _users(path: str, users: Any) -> dict[str, bytes]:
    if not isinstance(users, dict):
        raise WebConfigError(f"--web-config {path}: basic_auth_users must be a mapping of user: bcrypt hash")
    out: dict[str, bytes] = {}
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError(f"--web-config {path}: basic_auth_users: bad user name {str(user)[:40]!r}")
        if not isinstance(hashed, str) or not BCRYPT_HASH.match(hashed):
            raise WebConfigError(f"--web-config {path}: basic_auth_users.{user[:40]!r}: not a bcrypt hash")
        out[user] = hashed.encode()
    if out:
        try:
            import bcrypt  # noqa: F401 - only checking it is there, so the error comes at start, not at a scrape
        except ImportError:
            raise WebConfigError("--web-config basic_auth_users needs bcrypt: pip install 'optitop[web]'") from None
    return out


class BasicAuth:
    """Checks an ``Authorization`` header against the users' bcrypt hashes (thread-safe).

    bcrypt costs ~80 ms a check by design: one check runs at a time (a flood of wrong passwords takes one
    core, not all), and passing credentials are remembered by digest so steady scrapes cost a dict lookup.
    An unknown user is refused without a check: exporter-toolkit hashes anyway so timing does not tell which
    names exist; here the names are not the secret (they sit in Prometheus's config), the passwords are.
    """

    def __init__(self, users: dict[str, bytes]) -> None:
        """Check against ``users`` (user -> bcrypt hash)."""
        self.users = users
        self._passed: dict[bytes, None] = {}
        self._lock = threading.Lock()

    def _credentials(self, header: str | None) -> tuple[str, bytes, bytes] | None:
        """(password, hash, cache key) when ``header`` names a configured user; None for anything else."""
        if not header:
            return None
        scheme, _, encoded = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        hashed = self.users.get(user)
        if not sep or hashed is None:
            return None
        return password, hashed, hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()

    def costly(self, header: str | None) -> bool:
        """True when checking ``header`` needs bcrypt: a configured user whose password has not passed yet.

        Quick (a digest and a lookup): the HTTP server asks it on its I/O thread to send such requests to
        their own thread, so a flood of wrong passwords never delays a scraper already known.
        """
        got = self._credentials(header)
        return got is not None and got[2] not in self._passed

    def allows(self, header: str | None) -> bool:
        """True when ``header`` carries Basic credentials of a configured user with the right password."""
        got = self._credentials(header)
        if got is None:
            return False
        password, hashed, digest = got
        if digest in self._passed:
            return True
        import bcrypt

        with self._lock:
            try:
                ok = bcrypt.checkpw(password.encode(), hashed)
            except ValueError:
                return False
            if ok:
                if len(self._passed) >= AUTH_CACHE_MAX:
                    self._passed.clear()
                self._passed[digest] = None
        return ok
