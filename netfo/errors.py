"""The one exception netfo shows its user: a line that says what to do."""


class NetfoError(Exception):
    """A failure to report to the user as one line."""


# Refusals that `netfo up`'s client can tell before it starts the daemon
# (cli.py, with no import of pyroute2) and the daemon tells again (build.py)
def already_running(ifname: str) -> NetfoError:
    return NetfoError(f"netfo is already running on {ifname} "
                      f"(see: netfo status {ifname}; netfo restart {ifname} replaces it)")


def no_interface(ifname: str) -> NetfoError:
    return NetfoError(f"no interface named {ifname}: pick one from `ip link`")
