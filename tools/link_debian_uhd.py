"""Make Debian's `python3-uhd` importable inside this virtual environment.

PyPI has no `uhd`; Debian ships it for the system Python, built against numpy 1.x.
We link only the `uhd` package (not all of dist-packages, which would shadow the venv's
numpy/scipy) through a `.pth` file. Does nothing, and says so, when the package is absent; ``--quiet``: silent when already
linked.
"""
from __future__ import annotations

import pathlib
import site
import sys

DEBIAN_UHD = pathlib.Path("/usr/lib/python3/dist-packages/uhd")


def main(argv: list[str] | None = None) -> int:
    quiet = "--quiet" in (sys.argv[1:] if argv is None else argv)
    if not DEBIAN_UHD.is_dir():
        stale = pathlib.Path(sys.prefix) / "debian_uhd" / "uhd"
        if stale.is_symlink():         # the package was removed since it was linked
            stale.unlink()
        print("link_debian_uhd: /usr/lib/python3/dist-packages/uhd not found "
              "(apt-get install python3-uhd); USRP support will be unavailable")
        return 0
    venv = pathlib.Path(sys.prefix)
    link_dir = venv / "debian_uhd"
    link_dir.mkdir(exist_ok=True)
    link = link_dir / "uhd"
    site_packages = pathlib.Path(site.getsitepackages()[0])
    pth = site_packages / "debian_uhd.pth"
    if quiet and link.is_symlink() and link.resolve() == DEBIAN_UHD.resolve() and pth.is_file():
        return 0                       # already linked: say nothing on every `make`
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(DEBIAN_UHD)
    pth.write_text(str(link_dir) + "\n")
    print(f"link_debian_uhd: linked {DEBIAN_UHD} into {site_packages}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
