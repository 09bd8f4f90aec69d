"""Make Debian's `python3-uhd` importable inside this virtual environment.

PyPI has no `uhd`; Debian ships it for the system Python, built against numpy 1.x.
We link only the `uhd` package (not all of dist-packages, which would shadow the venv's
numpy/scipy) through a `.pth` file. Does nothing, and says so, when the package is absent.
"""
from __future__ import annotations

import pathlib
import site
import sys

DEBIAN_UHD = pathlib.Path("/usr/lib/python3/dist-packages/uhd")


def main() -> int:
    if not DEBIAN_UHD.is_dir():
        print("link_debian_uhd: /usr/lib/python3/dist-packages/uhd not found "
              "(apt-get install python3-uhd); USRP support will be unavailable")
        return 0
    venv = pathlib.Path(sys.prefix)
    link_dir = venv / "debian_uhd"
    link_dir.mkdir(exist_ok=True)
    link = link_dir / "uhd"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(DEBIAN_UHD)
    site_packages = pathlib.Path(site.getsitepackages()[0])
    (site_packages / "debian_uhd.pth").write_text(str(link_dir) + "\n")
    print(f"link_debian_uhd: linked {DEBIAN_UHD} into {site_packages}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
