"""`backup schedule --print systemd|cron`: the printed job parses (systemd-analyze verify
when it is installed) and, for cron, really runs create, verify, ship, prune in order
with the automation token from the environment file."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess

import pytest

from tests.support.cli import run_cli

SHIP = ["--ship-to", "sftp://bk@vault.example:2222/srv/polysec 100%",
        "--known-hosts", "/etc/polysec/known_hosts", "--ssh-identity", "/etc/polysec/id"]


def split_units(text: str) -> dict[str, str]:
    units: dict[str, str] = {}
    for block in text.split("### ")[1:]:
        name, _, body = block.partition("\n")
        units[name.strip()] = body.rstrip("\n") + "\n"
    return units


def parse_unit(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None,
                                          comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    # Repeated keys (ExecStart=, SystemCallFilter=) are kept as a list by hand.
    parser.read_string(text)
    return parser


def exec_lines(text: str) -> list[list[str]]:
    return [shlex.split(line.split("=", 1)[1].replace("%%", "%").replace("$$", "$"))
            for line in text.splitlines() if line.startswith("ExecStart=")]


def test_systemd_units_are_valid(capsys, tmp_path):
    fake = tmp_path / "polysec"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    done = run_cli(capsys, "backup", "schedule", "--print", "systemd", "--polysec", str(fake),
                   "--env-file", str(tmp_path / "backup.env"), "--at", "03:15", *SHIP)
    assert done.code == 0, done.err
    units = split_units(done.out)
    assert set(units) == {"polysec-backup.service", "polysec-backup.timer",
                          "polysec-backup-drill.service", "polysec-backup-drill.timer"}
    service, timer = units["polysec-backup.service"], units["polysec-backup.timer"]
    # The weekly restore drill: its own oneshot service, as hardened, and timer.
    drill = parse_unit(units["polysec-backup-drill.service"])
    assert exec_lines(units["polysec-backup-drill.service"]) == [
        [str(fake), "backup", "drill"]]
    assert drill["Service"]["ProtectSystem"] == "strict"
    assert drill["Service"]["EnvironmentFile"] == str(tmp_path / "backup.env")
    drill_timer = parse_unit(units["polysec-backup-drill.timer"])
    assert drill_timer["Timer"]["OnCalendar"] == "Sun *-*-* 04:30:00 UTC"
    assert drill_timer["Timer"]["Unit"] == "polysec-backup-drill.service"

    s = parse_unit(service)
    assert s["Service"]["Type"] == "oneshot"
    assert s["Service"]["User"] == "polysec"
    assert s["Service"]["EnvironmentFile"] == str(tmp_path / "backup.env")
    for option, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                          "ProtectHome": "yes", "PrivateTmp": "yes", "UMask": "0077",
                          "CapabilityBoundingSet": ""}.items():
        assert s["Service"][option] == value, option
    steps = exec_lines(service)
    assert [step[1:3] for step in steps] == [["backup", "create"], ["backup", "verify"],
                                             ["backup", "ship"], ["backup", "prune"]]
    assert all(step[0] == str(fake) for step in steps)
    assert steps[2][steps[2].index("--to") + 1] == "sftp://bk@vault.example:2222/srv/polysec 100%"
    assert "POLYSEC_TOKEN" not in "".join(" ".join(step) for step in steps)  # env file only

    t = parse_unit(timer)
    assert t["Timer"]["OnCalendar"] == "*-*-* 03:15:00 UTC"
    assert t["Timer"]["Persistent"] == "true"
    assert t["Timer"]["Unit"] == "polysec-backup.service"
    assert t["Install"]["WantedBy"] == "timers.target"

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # the structural checks above stand alone
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    checked = subprocess.run([analyze, "verify", *(str(tmp_path / name) for name in units)],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and checked.stderr.strip() == "", checked.stderr
    # And the check can fail: a misspelt key is reported.
    (tmp_path / "polysec-backup.timer").write_text(timer.replace("Persistent", "Persistant"))
    broken = subprocess.run([analyze, "verify", str(tmp_path / "polysec-backup.timer")],
                            capture_output=True, text=True, check=False)
    assert "Persistant" in broken.stderr


def cron_command(line: str) -> tuple[list[str], str, str]:
    fields = line.split(None, 6)
    return fields[:5], fields[5], fields[6]


def test_the_cron_line_runs_the_steps_in_order(capsys, tmp_path):
    log = tmp_path / "calls.log"
    fake = tmp_path / "polysec"
    # A stand-in for polysec: records its arguments and the token it was given, and fails
    # on `verify` when told to.
    fake.write_text(f"""#!/bin/sh
echo "$POLYSEC_TOKEN|$(umask)|$*" >> {log}
[ "$2" = verify ] && [ -n "$FAIL_VERIFY" ] && exit 1
exit 0
""")
    fake.chmod(0o755)
    env = tmp_path / "backup.env"
    env.write_text("POLYSEC_TOKEN=tok-automation-123\n")
    env.chmod(0o600)
    done = run_cli(capsys, "backup", "schedule", "--print", "cron", "--polysec", str(fake),
                   "--env-file", str(env), "--at", "04:05", "--user", "backup_svc", *SHIP)
    assert done.code == 0, done.err
    line, drill_line = [x for x in done.out.splitlines()
                        if x and not x.startswith("#") and "=" not in x.split()[0]]
    when, user, command = cron_command(line)
    drill_when, drill_user, drill_command = cron_command(drill_line)
    assert drill_when == ["30", "4", "*", "*", "0"] and drill_user == "backup_svc"
    assert when == ["5", "4", "*", "*", "*"] and user == "backup_svc"
    assert re.search(r"(?<!\\)%", command) is None  # cron would cut the line at a bare %
    shell = command.replace("\\%", "%")  # what cron hands to /bin/sh
    if shutil.which("flock") is None:
        pytest.skip("flock (util-linux) not installed")
    subprocess.run(["/bin/sh", "-c", shell], check=True, timeout=30)
    calls = log.read_text().splitlines()
    assert [c.split("|")[2].split()[1] for c in calls] == ["create", "verify", "ship", "prune"]
    assert all(c.startswith("tok-automation-123|0077|") for c in calls)
    assert "sftp://bk@vault.example:2222/srv/polysec 100%" in calls[2]

    log.unlink()
    subprocess.run(["/bin/sh", "-c", drill_command.replace("\\%", "%")], check=True,
                   timeout=30)
    assert [c.split("|")[2].split()[1:] for c in log.read_text().splitlines()] == [["drill"]]
    log.unlink()
    failed = subprocess.run(["/bin/sh", "-c", shell], env={"FAIL_VERIFY": "1"}, check=False,
                            timeout=30)
    assert failed.returncode != 0
    assert [c.split("|")[2].split()[1] for c in log.read_text().splitlines()] == \
        ["create", "verify"]  # stops at the first failure: nothing shipped or pruned


def test_without_ship_and_verify(capsys):
    done = run_cli(capsys, "backup", "schedule", "--print", "systemd", "--no-verify")
    assert done.code == 0
    steps = exec_lines(split_units(done.out)["polysec-backup.service"])
    assert [s[2] for s in steps] == ["create", "prune"]
    assert "backups on this host only" in done.out
    without = run_cli(capsys, "backup", "schedule", "--print", "systemd", "--no-drill")
    assert "polysec-backup-drill" not in without.out
    cron = run_cli(capsys, "backup", "schedule", "--print", "cron", "--no-drill")
    assert "backup drill" not in cron.out


@pytest.mark.parametrize("args, message", [
    (["--at", "25:00"], "HH:MM"),
    (["--drill-at", "4:30"], "--drill-at wants HH:MM"),
    (["--user", "root; rm -rf /"], "not a valid user name"),
    (["--ship-to", "sftp://a@b/c"], "needs --known-hosts and --ssh-identity"),
    (["--polysec", "polysec"], "absolute path"),
    (["--env-file", "/etc/poly sec.env"], "without spaces"),
])
def test_bad_values_are_refused(capsys, args, message):
    done = run_cli(capsys, "backup", "schedule", "--print", "systemd", *args)
    assert done.code == 2 and message in done.err
