"""Planted secrets: credential-shaped markers of every kind issue 9 names, each one unique and findable.

Each carrier builds a string that holds a secret the way real configuration holds one (a query
parameter of an index URL, a Bearer value inside XLA_FLAGS, a GPU UUID, a private key block...), and
returns the secret's random part with it. A leak is any 10 characters of that random part found in
an output, so a secret cut short, re-quoted or wrapped still counts; 10 random characters do not
appear by chance in anything envcap writes.

Used by tests/unit/test_planted_secrets.py (hypothesis, the pure functions and the lock emitters) and
tests/e2e/test_planted_secrets_e2e.py (real snapshot, build and replay runs).
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
WINDOW = 10


@dataclass(frozen=True)
class Planted:
    carrier: str
    text: str  # what is planted (a whole value, URL, argument string or file)
    secret: str  # the random part that must never be written

    def leaked_in(self, output: str) -> bool:
        return any(self.secret[i:i + WINDOW] in output for i in range(len(self.secret) - WINDOW + 1))


_TRUE = random.SystemRandom()


def core(rnd: random.Random, n: int = 24, alphabet: str = ALNUM) -> str:
    """Random characters with at least one upper, lower and digit (as real tokens have).

    Why not from ``rnd``: hypothesis drives ``rnd`` and shrinks it towards constant output, and a
    secret of forty ``a`` would "leak" into any hash; the structure (carrier, form, key, place) comes
    from ``rnd``, so failures still shrink, and the characters are always truly random.
    """
    while True:
        text = "".join(_TRUE.choice(alphabet) for _ in range(n))
        if alphabet != ALNUM or (any(c.isupper() for c in text) and any(c.islower() for c in text)
                                 and any(c.isdigit() for c in text)):
            return text


def _host(rnd: random.Random) -> str:
    return rnd.choice(["pypi.corp.example", "artifacts.example.com", "gitlab.example.org", "10.0.0.5:8443",
                       "acct.blob.core.windows.net", "bucket.s3.amazonaws.com", "nexus.internal"])


# -- secrets with a shape ----------------------------------------------------------------------------
def token_shape(rnd: random.Random) -> tuple[str, str]:
    kind = rnd.choice(["ghp", "gho", "ghs", "pat", "glpat", "xoxb", "xoxp", "hf", "sk", "sk-proj", "akia", "asia",
                       "aiza", "npm", "pypi", "jwt"])
    if kind in ("ghp", "gho", "ghs"):
        s = core(rnd, 36)
        return f"{kind}_{s}", s
    if kind == "pat":
        s = core(rnd, 22) + "_" + core(rnd, 59)
        return f"github_pat_{s}", s
    if kind == "glpat":
        s = core(rnd, 20)
        return f"glpat-{s}", s
    if kind in ("xoxb", "xoxp"):
        s = core(rnd, 24)
        return f"{kind}-{_TRUE.randrange(10**11, 10**12)}-{_TRUE.randrange(10**11, 10**12)}-{s}", s
    if kind == "hf":
        s = core(rnd, 34)
        return f"hf_{s}", s
    if kind == "sk":
        s = core(rnd, 48)
        return f"sk-{s}", s
    if kind == "sk-proj":
        s = core(rnd, 40) + "_" + core(rnd, 20)
        return f"sk-proj-{s}", s
    if kind in ("akia", "asia"):
        s = core(rnd, 16, string.ascii_uppercase + string.digits)
        return f"{kind.upper()}{s}", s
    if kind == "aiza":
        s = core(rnd, 35)
        return f"AIza{s}", s
    if kind == "npm":
        s = core(rnd, 36)
        return f"npm_{s}", s
    if kind == "pypi":
        s = core(rnd, 60)
        return f"pypi-AgEIcHlwaS5vcmc{s}", s
    s = core(rnd, 43)
    return f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ{core(rnd, 30)}.{s}", s


def gpu_uuid(rnd: random.Random) -> tuple[str, str]:
    u = str(uuid.UUID(int=_TRUE.getrandbits(128)))
    form = rnd.choice(["GPU-{u}", "MIG-GPU-{u}/1/0", "MIG-{u}", "GPU-{U}"])
    return form.format(u=u, U=u.upper()), u


def private_key(rnd: random.Random) -> tuple[str, str]:
    s = core(rnd, 64, ALNUM + "+/")
    kind = rnd.choice(["RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY",
                       "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY", "PGP PRIVATE KEY BLOCK"])
    return f"-----BEGIN {kind}-----\n{s}\n{core(rnd, 40)}\n-----END {kind}-----", s


# -- carriers: where a secret sits in a value --------------------------------------------------------
QUERY_PARAMS = ("token", "access_token", "private_token", "X-Amz-Signature", "sig", "X-Amz-Security-Token",
                "X-Amz-Credential", "api_key", "apikey", "apiKey", "key", "code", "password", "secret",
                "client_secret", "Signature", "auth", "refresh_token", "api-key", "access_key", "subscription-key",
                "x-api-key", "secret_key", "sas", "X-Goog-Signature", "id_token", "session")


def query_token(rnd: random.Random) -> tuple[str, str]:
    s = core(rnd)
    param = rnd.choice(QUERY_PARAMS)
    host = _host(rnd)
    form = rnd.choice([
        "https://{h}/simple/?{p}={s}",
        "https://{h}/simple?foo=1&{p}={s}",
        "https://{h}/c/pkg-1.0-py3-none-any.whl?sv=2022-11-02&se=2030-01-01&sp=r&{p}={s}",
        "https://{h}/x.whl?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20240101T000000Z&{p}={s}&X-Amz-Expires=60",
        "https://{h}/api/v4/projects/1/packages/pypi/simple;{p}={s}",
        "https://{h}/simple/?{p}={s}#frag",
        "https://{h}/callback#{p}={s}&token_type=bearer",
    ])
    return form.format(h=host, p=param, s=s), s


def url_userinfo(rnd: random.Random) -> tuple[str, str]:
    s = core(rnd)
    host = _host(rnd)
    form = rnd.choice(["https://alice:{s}@{h}/simple/", "https://{s}@{h}/org/repo.git",
                       "git+https://oauth2:{s}@{h}/org/repo.git", "http://__token__:{s}@{h}/simple",
                       "https://user:p@ss{s}@{h}/simple/", "ssh://git:{s}@{h}/org/repo.git",
                       "https://{s}:x-oauth-basic@{h}/org/repo.git"])
    return form.format(h=host, s=s), s


def bearer(rnd: random.Random) -> tuple[str, str]:
    s = core(rnd, 32, ALNUM + "._-")
    form = rnd.choice(["Bearer {s}", "bearer {s}", "Authorization: Bearer {s}", "authorization=Bearer {s}",
                       "Authorization: token {s}", "Proxy-Authorization: Basic {s}", "Authorization: {s}",
                       '"Authorization": "Bearer {s}"', "-H 'Authorization: Bearer {s}'", "Basic {s}"])
    return form.format(s=s), s


KEYS = ("password", "passwd", "pwd", "secret", "api_key", "apikey", "apiKey", "client_secret", "access_key",
        "aws_secret_access_key", "private_key", "auth_token", "hf_token", "db_password", "session_id", "cookie",
        "passphrase", "token", "API_TOKEN", "secret_key", "x-api-key", "credentials", "signature")


def key_value(rnd: random.Random) -> tuple[str, str]:
    s = core(rnd)
    key = rnd.choice(KEYS)
    form = rnd.choice(["{k}={s}", "{k}: {s}", "{k}:{s}", "{k} = {s}", '{k}="{s}"', "{k}='{s}'", '"{k}": "{s}"',
                       "--xla_flag={k}={s}", "opt,{k}={s},x", "a;{k}={s}", "(k {k}={s})", "{{{k}: {s}}}"])
    return form.format(k=key, s=s), s


FLAGS = ("api_token", "hf_token", "token", "password", "secret", "auth-token", "access-key", "client-secret",
         "api-key", "github-token", "wandb_api_key", "hf-token", "passphrase")


def flag(rnd: random.Random) -> tuple[str, str]:
    s = core(rnd)
    name = rnd.choice(FLAGS)
    dashes = rnd.choice(["--", "-"])
    return (f"{dashes}{name}={s}" if rnd.random() < 0.6 else f"{dashes}{name} {s}"), s


CARRIERS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "query-token": query_token, "url-userinfo": url_userinfo, "bearer": bearer, "key-value": key_value,
    "flag": flag, "token-shape": token_shape, "private-key": private_key, "gpu-uuid": gpu_uuid,
}
URL_CARRIERS = ("query-token", "url-userinfo")


def plant(rnd: random.Random, carrier: str | None = None) -> Planted:
    name = carrier or rnd.choice(sorted(CARRIERS))
    text, secret = CARRIERS[name](rnd)
    return Planted(name, text, secret)


def wrap(rnd: random.Random, text: str) -> str:
    """The planted text amid ordinary content, as it sits in a real flags variable or argument string."""
    before = rnd.choice(["", "--xla_cpu_enable_fast_math=false ", "--xla_dump_to=/tmp/dump ", "mlx5_0:1 ", "1,"])
    after = rnd.choice(["", " --xla_gpu_autotune_level=2", " --epochs 3", ",eth0", ";x=1"])
    return before + text + after


def leaks(planted: Iterable[Planted], outputs: dict[str, str]) -> list[tuple[str, str, str]]:
    """(carrier, planted text, where) for every marker found in any output."""
    found = []
    for item in planted:
        for where, text in outputs.items():
            if item.leaked_in(text):
                found.append((item.carrier, item.text, where))
    return found
