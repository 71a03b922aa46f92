import subprocess, sys


def test_help_runs():
    r = subprocess.run([sys.executable, "-m", "cnnexp", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "residual gradient" in r.stdout
