"""Issue 11 #1: a service refuses to start with a JWT secret anyone could forge tokens with."""
import os
import subprocess
import sys

import pytest

from common.settings import PUBLISHED_SECRETS, Settings, require_secure_secret

STRONG = "9f" * 32
PUBLISHED = next(iter(PUBLISHED_SECRETS))


@pytest.mark.parametrize("secret", ["", "short-secret", PUBLISHED])
def test_production_refuses_a_weak_secret(secret, capsys):
    with pytest.raises(SystemExit) as exc:
        require_secure_secret(Settings(jwt_secret=secret, env="production"), "svc")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("svc: refusing to start: EVENTLY_JWT_SECRET")


def test_production_accepts_a_strong_secret():
    require_secure_secret(Settings(jwt_secret=STRONG, env="production"), "svc")


@pytest.mark.parametrize("secret", ["short-secret", PUBLISHED])
def test_dev_allows_a_weak_secret_but_not_none(secret):
    require_secure_secret(Settings(jwt_secret=secret, env="dev"), "svc")
    with pytest.raises(SystemExit):
        require_secure_secret(Settings(jwt_secret="", env="dev"), "svc")


def test_the_default_environment_is_production_and_there_is_no_default_secret():
    assert Settings.model_fields["env"].default == "production"
    assert Settings.model_fields["jwt_secret"].default == ""


@pytest.mark.parametrize("module", ["command_service.entrypoints.app", "query_service.app"])
def test_the_services_exit_non_zero_with_one_line_without_a_secret(module):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTLY_")}
    env["EVENTLY_COMMAND_PORT"] = env["EVENTLY_QUERY_PORT"] = "1"  # never reached: it must exit before binding
    r = subprocess.run([sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert r.stderr.strip().count("\n") == 0 and "EVENTLY_JWT_SECRET is not set" in r.stderr
