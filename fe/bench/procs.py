"""What the benches that start a real ``python app.py`` need of the operating
system: a free port to give it, and its resident set size."""
import socket


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    """Process ``pid``'s resident set size (VmRSS) in MiB; NaN where /proc has none."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")
