"""Operator settings (server/settings.py) and visitor identities (server/visitors.py): no server needed."""

import argparse
import time

import pytest

from server.settings import LimitExceeded, Settings, add_arguments, from_environment
from server.visitors import OPERATOR_HOURS, Visitors, load_secret


def parse(argv, environ):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_environment(parser.parse_args(argv), environ=environ)


def test_local_use_keeps_its_freedom_and_a_space_is_public():
    local = parse([], {})
    assert not local.public and local.training == "open" and local.max_epochs is None and local.download_dir is None
    local.check_run(epochs=1000, width=1.0, input_size=224, batch_size=4096, minutes=None)  # no limit to pass
    for environ, argv in (({"GOOGLENET_PUBLIC": "1"}, []), ({"SPACE_ID": "someone/googlenet"}, []), ({}, ["--public"])):
        public = parse(argv, environ)
        assert public.public and public.training == "owner" and not public.downloads
        assert public.max_epochs == 20 and public.max_width == 0.25 and public.max_input_size == 32
    assert not parse(["--local"], {"SPACE_ID": "someone/googlenet"}).public


def test_flags_override_variables_and_bad_values_say_which():
    rules = parse(
        ["--max-epochs", "5", "--training", "off"], {"GOOGLENET_PUBLIC": "1", "GOOGLENET_MAX_EPOCHS": "50", "GOOGLENET_MAX_WIDTH": "none"}
    )
    assert rules.max_epochs == 5 and rules.training == "off" and rules.max_width is None
    with pytest.raises(ValueError, match="GOOGLENET_MAX_EPOCHS"):
        parse([], {"GOOGLENET_MAX_EPOCHS": "many"})
    with pytest.raises(ValueError, match="GOOGLENET_TRAINING"):
        parse([], {"GOOGLENET_TRAINING": "everyone"})
    with pytest.raises(ValueError, match="at least 16"):
        parse([], {"GOOGLENET_ADMIN_TOKEN": "short"})


def test_every_limit_passed_is_named_with_its_value():
    rules = Settings(public=True, max_epochs=20, max_width=0.25, max_input_size=32, max_batch=256, max_minutes=60.0)
    rules.check_run(epochs=20, width=0.25, input_size=32, batch_size=256, minutes=60)
    with pytest.raises(LimitExceeded) as refused:
        rules.check_run(epochs=100, width=1.0, input_size=224, batch_size=512, minutes=600)
    message = str(refused.value)
    for expected in ("epochs 100", "limit of 20", "GOOGLENET_MAX_EPOCHS", "width 1", "limit of 0.25", "input size (pixels) 224",
                     "limit of 32", "batch size 512", "limit of 256", "wall time (minutes) 600", "limit of 60"):  # fmt: skip
        assert expected in message, expected


def test_a_public_server_offers_named_datasets_and_maps_no_path(tmp_path):
    root = tmp_path / "data"
    (root / "cifar10-subset" / "cifar-10-batches-py").mkdir(parents=True)
    (root / ".hidden").mkdir()
    rules = parse([], {"GOOGLENET_PUBLIC": "1", "GOOGLENET_DATA": str(root)})
    assert rules.datasets() == {"cifar10-subset": root / "cifar10-subset"}
    assert rules.dataset("cifar10-subset") == root / "cifar10-subset"
    # the same words for a folder that exists, a file that exists, one that does not, and a climb out
    answers = set()
    for typed in ("/etc", "/root/.bashrc", "/proc/self/environ", "../../../../etc", str(root / "cifar10-subset"), "/no/such/folder"):
        with pytest.raises(ValueError) as refused:
            rules.dataset(typed)
        answers.add(str(refused.value))
    assert answers == {"pick a dataset from the list (cifar10-subset); this server does not accept folder paths"}
    named = parse([], {"GOOGLENET_PUBLIC": "1", "GOOGLENET_DATA": str(root), "GOOGLENET_DATASETS": "small=cifar10-subset"})
    assert named.datasets() == {"small": root / "cifar10-subset"}
    with pytest.raises(ValueError, match="inside the data root"):
        parse([], {"GOOGLENET_PUBLIC": "1", "GOOGLENET_DATA": str(root), "GOOGLENET_DOWNLOAD_DIR": str(tmp_path / "elsewhere")})


def test_tokens_are_signed_and_cannot_be_forged(tmp_path):
    visitors = Visitors(load_secret(tmp_path))
    alice = visitors.issue()
    assert visitors.verify(alice.token) == alice
    assert Visitors(load_secret(tmp_path)).verify(alice.token) == alice  # same secret after a restart
    assert (tmp_path / ".secret").stat().st_mode & 0o777 == 0o600
    assert Visitors(b"another secret of 32 bytes......").verify(alice.token) is None
    version, body, signature = alice.token.split(".")
    bob = visitors.issue()
    for forged in (f"{version}.{bob.token.split('.')[1]}.{signature}", alice.token[:-2], "v1.e30.AAAA", None, 42, "x" * 600):
        assert visitors.verify(forged) is None
    assert alice.key != bob.key and alice.name.startswith("visitor ") and alice.id not in alice.name
    assert alice.key not in alice.token  # the key records runs; it cannot be read off the token


def test_sessions_and_operators(tmp_path, monkeypatch):
    visitors = Visitors(load_secret(tmp_path, environ={"GOOGLENET_SECRET": "an operator's secret"}))
    first, fresh = visitors.identify(None, "session-1")
    assert fresh and visitors.of_session("session-1") == first
    again, fresh = visitors.identify(None, "session-1")  # the same API client, no token sent
    assert again == first and fresh
    elsewhere, fresh = visitors.identify(first.token, "session-2")  # a reload: new session, same browser
    assert elsewhere.key == first.key and not fresh
    operator = visitors.issue(operator=True, visitor_id=first.id)
    assert operator.operator and operator.key == first.key
    later = time.time() + OPERATOR_HOURS * 3600 + 60
    monkeypatch.setattr(time, "time", lambda: later)
    lapsed = visitors.verify(operator.token)
    assert lapsed.key == first.key and not lapsed.operator


def test_pictures_past_the_quota_are_refused_and_past_the_cap_the_oldest_go(tmp_path):
    from explain import ImageError
    from server.storage import PictureLedger

    def picture(name, size=1000):
        path = tmp_path / name
        path.write_bytes(bytes(size))
        return path

    ledger = PictureLedger(quota_bytes=2500, total_bytes=4500, retention_s=3600)
    first, second = picture("a1.png"), picture("a2.png")
    ledger.charge(first, "alice")
    ledger.charge(second, "alice")
    ledger.charge(second, "alice")  # the same file again is not counted twice
    assert ledger.used("alice") == 2000
    third = picture("a3.png")
    with pytest.raises(ImageError, match=r"per-visitor quota of .* MB \(GOOGLENET_UPLOAD_QUOTA_MB\)"):
        ledger.charge(third, "alice")
    assert not third.exists() and first.exists()  # refused and deleted; what was kept stays
    for name in ("b1.png", "b2.png"):
        ledger.charge(picture(name), "bob")
    ledger.charge(picture("c1.png"), "carol")  # 5000 bytes > the 4500 cap: the oldest upload goes
    assert not first.exists() and second.exists() and ledger.used("alice") == 1000
    later = PictureLedger(quota_bytes=1500, total_bytes=None, retention_s=0.0)
    later.charge(picture("d1.png"), "dave")
    later.charge(picture("d2.png"), "dave")  # the first is past the retention: it no longer counts
