"""Redaction as a rule of its own: every shape the module claims to mask, and what it must leave alone."""

from __future__ import annotations

import pytest

from healthkit.system.redact import MASK, is_secret_name, redact_argv, redact_mapping, redact_text

TOKEN = "hf_" + "aB3" * 10


@pytest.mark.parametrize(
    "text",
    [
        f"HF_TOKEN={TOKEN}",
        f"export HF_TOKEN='{TOKEN}'",
        f"token: {TOKEN}",
        f"using {TOKEN} for the hub",
        "OPENAI_API_KEY=sk-" + "x" * 30,
        "gh: ghp_" + "Z" * 24,
        "slack xoxb-1234567890-abc",
        'password = "hunter2 hunter3"',
        "db_passwd: hunter2",
        "AWS_SECRET_ACCESS_KEY=abc/def+ghi",
        "private_key: MIIEvQIBADANBg",
        "credentials=foo",
        "auth: xyz",
        "HF_AUTH=xyz",
        "Authorization: Bearer eyJhbGciOi.payload.sig",
        "curl -H 'Authorization: Basic dXNlcjpwYXNz'",
    ],
)
def test_secrets_are_masked(text):
    out = redact_text(text)
    assert MASK in out, out
    for secret in (
        TOKEN,
        "sk-" + "x" * 30,
        "hunter2",
        "abc/def+ghi",
        "MIIEvQIBADANBg",
        "xyz",
        "eyJhbGciOi",
        "dXNlcjpwYXNz",
        "ghp_" + "Z" * 24,
        "xoxb-1234567890-abc",
    ):
        assert secret not in out, (text, out)


@pytest.mark.parametrize(
    "url,leak",
    [
        ("https://user:pa55@hub.example/x.git", "pa55"),
        (f"https://{TOKEN}@hub.example/repo", TOKEN),  # a token as user name, no password part
        ("https://glpat0123456789abcdef@git.example/r.git", "glpat0123456789abcdef"),  # one no other rule knows
        ("git+ssh://deploy:k3y@host:22/r", "k3y"),
    ],
)
def test_url_credentials_with_and_without_password(url, leak):
    out = redact_text(f"clone {url} now")
    assert leak not in out and f"://{MASK}@" in out


@pytest.mark.parametrize(
    "text",
    [
        "author: Jane Doe",
        "Eval steps: 500",
        "learning_rate: 2e-4",
        "https://hub.example/x",
        "authored by the team",
        "tokenizer: /models/tok",
        "max_new_tokens: 512",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert redact_text(text) == text


def test_names():
    assert all(is_secret_name(n) for n in ("hf_token", "API_KEY", "api-key", "Password", "authorization", "HF_AUTH"))
    assert not any(is_secret_name(n) for n in ("author", "authors", "eval_steps", "base_model"))


def test_argv_flags_and_embedded_tokens():
    argv = ["python", "train.py", "--hf-token", TOKEN, "--api_key=abc123", "--lr", "2e-4", f"--push={TOKEN}"]
    out = redact_argv(argv)
    assert out[:3] == ["python", "train.py", "--hf-token"] and out[3] == MASK
    assert out[4] == f"--api_key={MASK}" and out[5:7] == ["--lr", "2e-4"]
    assert TOKEN not in " ".join(out)


def test_argv_values_no_pattern_knows_are_masked_whole():
    argv = [
        "python",
        "train.py",
        "--token",
        "plainsecret1",
        "--password=p@ss=word",
        "--secret=two words",
        "API_KEY=a b",
        "--lr",
        "2e-4",
        "--name",
        "a=b",
        "-x",
        "v",
    ]
    assert redact_argv(argv) == [
        "python",
        "train.py",
        "--token",
        MASK,
        f"--password={MASK}",
        f"--secret={MASK}",
        f"API_KEY={MASK}",
        "--lr",
        "2e-4",
        "--name",
        "a=b",
        "-x",
        "v",
    ]
    assert redact_argv(["--token"]) == ["--token"] and redact_argv([]) == []


def test_secrets_inside_json_and_toml_values():
    cfg = {
        "hub": {"token": TOKEN, "repo": "me/model"},
        "wandb_api_key": "abc",
        "empty_token": "",
        "notes": [f"HF_TOKEN={TOKEN}"],
        "toml": f'hf_token = "{TOKEN}"',
    }
    out = redact_mapping(cfg)
    assert out["hub"] == {"token": MASK, "repo": "me/model"} and out["wandb_api_key"] == MASK
    assert out["empty_token"] == ""  # nothing to hide: an empty value stays visible (it is a finding of its own)
    assert TOKEN not in repr(out)


def test_a_notification_url_is_named_by_scheme_and_server_only_and_every_secret_part_is_masked() -> None:
    from healthkit.system.redact import describe_url, mask_secrets, url_secrets

    cases = {
        "json://127.0.0.1:8080/hook/tokJ1234": ("json://127.0.0.1:8080/…", ["tokJ1234"]),
        "mailto://ops:pw5678@smtp.example.com?to=a@example.com": (
            "mailto://smtp.example.com/…",
            ["pw5678", "ops:pw5678"],
        ),
        "tgram://123456:ABCDEF/9876": ("tgram://…", ["123456:ABCDEF", "ABCDEF", "9876"]),
        "ntfys://ntfy.sh/mytopic?token=tk_9999": ("ntfys://ntfy.sh/…", ["mytopic", "tk_9999"]),
        "slack://TokA1/TokB2/TokC3": ("slack://…", ["TokA1", "TokB2", "TokC3"]),
    }
    for url, (named, secrets) in cases.items():
        assert describe_url(url) == named
        text = mask_secrets(f"send to {url} failed: {' '.join(secrets)} refused", url_secrets(url))
        assert all(s not in text for s in secrets) and url not in text, text
    assert "smtp.example.com" in mask_secrets(
        "smtp.example.com refused", url_secrets("mailto://u:pw99@smtp.example.com")
    )
    assert describe_url("not a url") == "(an unparsable URL)"
