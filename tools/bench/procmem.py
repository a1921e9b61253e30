"""Process memory for the PyTorch benchmark peers (attention_torch.py, step_torch.py)."""


def proc_memory():
    """(current RSS, peak RSS) of this process in KiB: /proc/self/status, else getrusage."""
    try:
        with open("/proc/self/status") as f:
            kv = dict(line.split(":", 1) for line in f if ":" in line)
        return int(kv["VmRSS"].split()[0]), int(kv["VmHWM"].split()[0])
    except (OSError, KeyError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak, peak
