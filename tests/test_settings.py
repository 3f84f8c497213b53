"""A PUSHSVC_ variable no setting reads stops start-up, naming it and the setting it was probably
meant to be; the project's own variables that are not settings are allowed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pushsvc.settings import NOT_SETTINGS, PREFIX, REPO_ROOT, Settings, SettingsError, load_settings

REQUIRED = {"PUSHSVC_ADMIN_TOKEN": "a" * 16, "PUSHSVC_SECRET_KEY": "k" * 32}
# Where the project sets PUSHSVC_ variables for the processes it starts.
SETTERS = ["scripts/*", ".ci/*", "Dockerfile", "docker-compose.yml", "tests/conftest.py", "pushsvc/dev/*.py"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Only the required settings, in a working directory without a .env."""
    for name in list(os.environ):
        if name.upper().startswith(PREFIX):
            monkeypatch.delenv(name)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_a_typo_in_the_environment_names_the_setting_meant(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PUSHSVC_SMTP_HOTS", "mail.example.gov.cn")
    with pytest.raises(SettingsError) as stopped:
        load_settings()
    assert str(stopped.value) == ("pushsvc cannot start: PUSHSVC_SMTP_HOTS (in the environment) is not a setting; "
                                  "did you mean PUSHSVC_SMTP_HOST?")


def test_a_typo_in_dot_env_names_the_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PUSHSVC_REDIS_URL=redis://127.0.0.1:6379/3\npushsvc_quiet_hour=22:00-07:00\n"
                                   "OTHER_PROGRAM_SETTING=1\n", encoding="utf-8")
    with pytest.raises(SettingsError) as stopped:
        load_settings()
    assert str(stopped.value) == ("pushsvc cannot start: pushsvc_quiet_hour (in .env) is not a setting; "
                                  "did you mean PUSHSVC_QUIET_HOURS?")


def test_every_problem_is_named_together(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.delenv("PUSHSVC_SECRET_KEY")
    clean_env.setenv("PUSHSVC_NOTHING_LIKE_ANY", "1")
    with pytest.raises(SettingsError) as stopped:
        load_settings()
    assert str(stopped.value).splitlines() == [
        "pushsvc cannot start:",
        "  PUSHSVC_NOTHING_LIKE_ANY (in the environment) is not a setting",  # nothing near enough to suggest
        "  setting PUSHSVC_SECRET_KEY is required but not set",
    ]


def test_the_projects_own_variables_and_settings_in_any_case_pass(clean_env: pytest.MonkeyPatch) -> None:
    for name in NOT_SETTINGS:
        clean_env.setenv(name, "1")
    clean_env.setenv("pushsvc_smtp_port", "2626")
    assert load_settings().smtp_port == 2626


def test_the_allow_list_holds_every_variable_the_project_sets() -> None:
    known = {PREFIX + field.upper() for field in Settings.model_fields}
    files = [path for pattern in SETTERS for path in REPO_ROOT.glob(pattern) if path.is_file()]
    named = {name for path in files for name in re.findall(r"PUSHSVC_[A-Z0-9_]*[A-Z0-9]", path.read_text("utf-8"))}
    assert len(files) >= 6 and len(named) > 10
    assert named - known - NOT_SETTINGS == set()
    assert NOT_SETTINGS - named == set()  # nothing allowed that nobody sets


def test_the_cli_says_it_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(PREFIX)}
    env.update(REQUIRED, PUSHSVC_SMTP_HOTS="mail.example.gov.cn")
    result = subprocess.run([sys.executable, "-m", "pushsvc.cli", "serve", "--port", "0"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "pushsvc cannot start: PUSHSVC_SMTP_HOTS (in the environment) is not a setting; did you mean PUSHSVC_SMTP_HOST?"
    ]
