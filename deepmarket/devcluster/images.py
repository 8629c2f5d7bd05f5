"""`deepmarket dev images`: the real node's images, built here without a Docker engine or a
registry.

- a Python base, Debian bookworm's python3 (3.11, as `python:3.11-slim`) from `debootstrap
  --variant=minbase`, imported with podman; the sandbox ("pause") image shares its only layer;
- the operator (`controller/Dockerfile`, `--build-arg BASE=<base>`) from a context holding only
  what its Dockerfile copies, tagged `OPERATOR_IMAGE` (the dev overlay's image);
- each module in `examples/modules/*` from its own Dockerfile with `podman build --from <base>`
  (the Dockerfile is unchanged, so it still builds on GitHub from the public base), tagged with
  the exact image names of the catalog entries whose source code is that directory.

Every image is saved as a docker-archive under ~/.cache/deepmarket/images/, named by a hash
of what it is built from: a changed module file makes a new image, an unchanged one is reused.
Old archives are removed (`evict`, `prune`) only once untouched for an hour: another
checkout's build or node on this machine may be reading one.
`node_archive()` bundles them into one archive (shared layers stored once) that `RealNode`
imports into its containerd.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from deepmarket.devcluster.binaries import cache_root
from deepmarket.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
MODULES_DIR = ROOT / "examples" / "modules"
BASE_IMAGE = "localhost/deepmarket/python:3.11-bookworm"
PAUSE_IMAGE = "localhost/deepmarket/pause:1"
OPERATOR_IMAGE = "localhost/deepmarket/operator:dev"  # overlays/dev names it
# On the installed Deployment: the archive its pods' image came from (the build of a checkout),
# so the demo rolls the operator when this checkout's code differs.
OPERATOR_BUILD_ANNOTATION = "deepmarket.dev/operator-build"
# controller/Dockerfile copies rclone from this (its RCLONE argument): Docker Hub's
# rclone/rclone is out of reach here, so an image holds this machine's rclone at that path.
RCLONE_IMAGE = "localhost/deepmarket/rclone:host"
# What controller/Dockerfile copies (and .dockerignore lets through on GitHub).
OPERATOR_CONTEXT = ("pyproject.toml", "README.md", "deepmarket", "controller/requirements.txt")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# python-is-python3: Dockerfiles say `python`; passwd: they add users; ca-certificates: pip.
PACKAGES = ("python3", "python3-pip", "python3-venv", "python-is-python3", "ca-certificates")
# Bump when the recipe below changes in a way the inputs do not show.
RECIPE = "2"
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".git"}
BUILD_TOOLS = ("podman", "debootstrap")

Say = Callable[[str], None]


class ImagesUnavailable(UserError):
    """An image cannot be built here (says why and how to fix it)."""


@dataclass(frozen=True)
class ModuleImage:
    """One module directory and the catalog image names it is tagged with."""

    directory: Path
    names: tuple[str, ...]


@dataclass(frozen=True)
class Built:
    name: str  # the first tag
    tags: tuple[str, ...]
    archive: Path
    cached: bool
    seconds: float


# --- pure decisions -----------------------------------------------------------------------


def base_key() -> str:
    recipe = "\n".join([RECIPE, SUITE, MIRROR, *PACKAGES])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def content_key(directory: Path, salt: str) -> str:
    """A hash of every file under `directory` (paths and bytes) and `salt` (the base's key)."""
    digest = hashlib.sha256(salt.encode())
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if not path.is_file() or SKIP_PARTS & set(rel.parts) or rel.parts[0].endswith(".egg-info"):
            continue
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def catalog_images(modules_dir: Path, entries: Iterable[Mapping]) -> list[ModuleImage]:
    """Module directories with a Dockerfile, each with the image names of the catalog entries
    whose `links.source_code` points at it."""
    found = []
    for directory in sorted(p for p in modules_dir.iterdir() if (p / "Dockerfile").is_file()):
        suffix = f"/examples/modules/{directory.name}"
        names = tuple(
            sorted(
                {
                    entry["runtime"]["image"]
                    for entry in entries
                    if str((entry.get("links") or {}).get("source_code", ""))
                    .rstrip("/")
                    .endswith(suffix)
                    and (entry.get("runtime") or {}).get("image")
                }
            )
        )
        if names:
            found.append(ModuleImage(directory, names))
    return found


def archive_name(image: str, key: str) -> str:
    slug = "".join(c if c.isalnum() or c in "-." else "_" for c in image.rsplit("/", 1)[-1])
    return f"{slug}-{key}.tar"


# --- building ----------------------------------------------------------------------------


def images_dir(env: Mapping[str, str] = os.environ) -> Path:
    return cache_root(env) / "images"


def missing_tools() -> list[str]:
    return [t for t in BUILD_TOOLS if not shutil.which(t)]


def _run(cmd: list[str], what: str, timeout: float = 1800, **kw: object) -> str:
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise ImagesUnavailable(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result.stdout


def _podman_has(image: str) -> bool:
    return (
        subprocess.run(
            ["podman", "image", "exists", image], capture_output=True, timeout=60
        ).returncode
        == 0
    )


def _check_tools() -> None:
    missing = missing_tools()
    if missing:
        raise ImagesUnavailable(
            f"missing {', '.join(missing)}: run `bash scripts/install-system-deps.sh` "
            "(Debian: podman debootstrap)"
        )
    if os.geteuid() != 0:
        raise ImagesUnavailable("building the node's images needs root (debootstrap, podman)")


def build_base(say: Say, cache: Path) -> tuple[Built, Built]:
    """The Python base and the pause image, as archives (built once per recipe)."""
    key = base_key()
    base_tar, pause_tar = cache / f"python-base-{key}.tar", cache / f"pause-{key}.tar"
    if base_tar.is_file() and pause_tar.is_file():
        if not _podman_has(BASE_IMAGE):
            _run(["podman", "load", "-q", "-i", str(base_tar)], "podman load of the base")
        return (
            Built(BASE_IMAGE, (BASE_IMAGE,), base_tar, True, 0.0),
            Built(PAUSE_IMAGE, (PAUSE_IMAGE,), pause_tar, True, 0.0),
        )
    _check_tools()
    started = time.monotonic()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="deepmarket-base-", dir=cache) as tmp:
        root = Path(tmp) / "root"
        say(
            f"building {BASE_IMAGE}: debootstrap {SUITE} minbase + {', '.join(PACKAGES)} "
            "(about 1-2 minutes, once)"
        )
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            "debootstrap",
        )
        # Slim it as the official slim images are, and let pip install into the system
        # Python the way python:3.11-slim allows (no PEP 668 marker there either).
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc"):
            for child in (root / junk).glob("*"):
                if child.is_file():
                    child.unlink()
                elif child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
        for marker in (root / "usr/lib").glob("python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        # This machine's trust store: pip inside a build must trust what the host trusts.
        host_ca = Path("/etc/ssl/certs/ca-certificates.crt")
        if host_ca.is_file():
            shutil.copyfile(host_ca, root / "etc/ssl/certs/ca-certificates.crt")
        rootfs = Path(tmp) / "rootfs.tar"
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(rootfs), "."], "tar")
        shutil.rmtree(root, ignore_errors=True)
        for image, change, out in (
            (BASE_IMAGE, 'CMD ["/usr/bin/python3"]', base_tar),
            (PAUSE_IMAGE, 'ENTRYPOINT ["/bin/sleep", "infinity"]', pause_tar),
        ):
            _run(
                ["podman", "import", "-q", "--change", change, str(rootfs), image],
                "podman import",
            )
            partial = out.with_suffix(".partial")
            _run(
                ["podman", "save", "-q", "--format", "docker-archive", "-o", str(partial), image],
                "podman save",
            )
            partial.replace(out)
    seconds = time.monotonic() - started
    say(f"built {BASE_IMAGE} and {PAUSE_IMAGE} in {seconds:.0f}s")
    return (
        Built(BASE_IMAGE, (BASE_IMAGE,), base_tar, False, seconds),
        Built(PAUSE_IMAGE, (PAUSE_IMAGE,), pause_tar, False, seconds),
    )


def build_module(module: ModuleImage, base: Built, say: Say, cache: Path) -> Built:
    key = content_key(module.directory, base.archive.name)
    out = cache / archive_name(module.names[0], key)
    if out.is_file():
        return Built(module.names[0], module.names, out, True, 0.0)
    _check_tools()
    started = time.monotonic()
    say(f"building {', '.join(module.names)} from {module.directory}/Dockerfile")
    tags = [arg for name in module.names for arg in ("-t", name)]
    _run(
        [
            "podman",
            "build",
            "-q",
            "--from",
            BASE_IMAGE,
            "--pull=never",
            "--network",
            "host",
            *tags,
            "-f",
            str(module.directory / "Dockerfile"),
            str(module.directory),
        ],
        f"podman build of {module.directory}",
    )
    partial = out.with_suffix(".partial")
    _run(
        ["podman", "save", "-q", "--format", "docker-archive", "-o", str(partial), *module.names],
        "podman save",
    )
    partial.replace(out)
    seconds = time.monotonic() - started
    say(f"built {module.names[0]} in {seconds:.0f}s")
    return Built(module.names[0], module.names, out, False, seconds)


def operator_context(root: Path, into: Path) -> None:
    """Copy what the operator's Dockerfile needs (`OPERATOR_CONTEXT`) from `root` into `into`."""
    for rel in OPERATOR_CONTEXT:
        src, dst = root / rel, into / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(
                src, dst, ignore=shutil.ignore_patterns(*SKIP_PARTS, "*.egg-info", "*.pyc")
            )
        else:
            shutil.copyfile(src, dst)
    (into / "controller" / "Dockerfile").write_bytes((root / "controller/Dockerfile").read_bytes())


def build_rclone(cache: Path) -> str:
    """`RCLONE_IMAGE`: this machine's rclone as /usr/local/bin/rclone in an image of its own
    (imported again only when the binary changes). Returns its content key."""
    found = shutil.which("rclone")
    if not found:
        raise ImagesUnavailable("missing rclone: run `bash scripts/install-system-deps.sh`")
    binary = Path(found).resolve()
    key = hashlib.sha256(binary.read_bytes()).hexdigest()[:16]
    stamp = cache / f"rclone-{key}.stamp"
    if stamp.is_file() and _podman_has(RCLONE_IMAGE):
        return key
    with tempfile.TemporaryDirectory(prefix="deepmarket-rclone-", dir=cache) as tmp:
        root = Path(tmp) / "root" / "usr" / "local" / "bin"
        root.mkdir(parents=True)
        shutil.copy2(binary, root / "rclone")
        tar = Path(tmp) / "rclone.tar"
        _run(["tar", "--numeric-owner", "-C", str(Path(tmp) / "root"), "-cf", str(tar), "."], "tar")
        _run(["podman", "import", "-q", str(tar), RCLONE_IMAGE], "podman import of rclone")
    for stale in cache.glob("rclone-*.stamp"):
        stale.unlink(missing_ok=True)
    stamp.write_text(str(binary))
    return key


def build_operator(
    base: Built, say: Say, cache: Path, root: Path = ROOT, load: bool = True
) -> Built:
    """The operator's image from controller/Dockerfile on the local base (cached by content).
    `load=False`: a cached archive is not loaded into podman (the caller imports the archive
    itself)."""
    with tempfile.TemporaryDirectory(prefix="deepmarket-operator-", dir=cache) as tmp:
        context = Path(tmp)
        operator_context(root, context)
        _check_tools()
        key = content_key(context, base.archive.name + build_rclone(cache))
        out = cache / archive_name(OPERATOR_IMAGE, key)
        if out.is_file():
            out.touch()  # in use (see `evict`)
            # The tag is fixed ("dev"): make sure it names this build, not another checkout's.
            if load:
                _run(["podman", "load", "-q", "-i", str(out)], f"podman load of {OPERATOR_IMAGE}")
            return Built(OPERATOR_IMAGE, (OPERATOR_IMAGE,), out, True, 0.0)
        started = time.monotonic()
        say(f"building {OPERATOR_IMAGE} from controller/Dockerfile (about a minute)")
        _run(
            [
                "podman",
                "build",
                "-q",
                "--pull=never",
                "--network",
                "host",
                "--build-arg",
                f"BASE={BASE_IMAGE}",
                "--build-arg",
                f"RCLONE={RCLONE_IMAGE}",
                "-t",
                OPERATOR_IMAGE,
                "-f",
                str(context / "controller" / "Dockerfile"),
                str(context),
            ],
            "podman build of controller/Dockerfile",
        )
    partial = out.with_suffix(".partial")
    _run(
        ["podman", "save", "-q", "--format", "docker-archive", "-o", str(partial), OPERATOR_IMAGE],
        "podman save",
    )
    partial.replace(out)
    evict(cache.glob(archive_name(OPERATOR_IMAGE, "*")), keep=out)
    seconds = time.monotonic() - started
    say(f"built {OPERATOR_IMAGE} in {seconds:.0f}s ({image_size(OPERATOR_IMAGE)})")
    return Built(OPERATOR_IMAGE, (OPERATOR_IMAGE,), out, False, seconds)


STALE_AFTER_S = 3600.0


def evict(candidates: Iterable[Path], keep: Path, now: float | None = None) -> list[Path]:
    """Remove older builds of an archive, but only those untouched for `STALE_AFTER_S`: the
    cache is shared by every checkout on the machine, and another one's test may be about to
    import the archive it just built (evicting it at once made their node's import fail)."""
    now = time.time() if now is None else now
    removed = []
    for stale in candidates:
        try:
            old = now - stale.stat().st_mtime > STALE_AFTER_S
        except OSError:
            continue
        if stale != keep and old:
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def image_size(image: str) -> str:
    """The image's size as podman reports it (e.g. "98.5 MB"), or "size unknown"."""
    out = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Size}}", image],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if out.returncode != 0 or not out.stdout.strip().isdigit():
        return "size unknown"
    return f"{int(out.stdout.strip()) / 1e6:.1f} MB"


def module_images(catalog_root: Path = ROOT) -> list[ModuleImage]:
    from deepmarket.catalog import load_catalog

    catalog = load_catalog(catalog_root)
    entries = [m.data for m in catalog.modules]
    return catalog_images(MODULES_DIR, entries)


def build_all(say: Say, env: Mapping[str, str] = os.environ) -> list[Built]:
    """The pause image, the base and every module image (cached ones are not rebuilt)."""
    cache = images_dir(env)
    base, pause = build_base(say, cache)
    built = [pause, base, build_operator(base, say, cache)]
    for module in module_images():
        built.append(build_module(module, base, say, cache))
    return built


def operator_image(say: Say, env: Mapping[str, str] = os.environ, root: Path = ROOT) -> Built:
    """This checkout's operator image as an archive (built only when its content changed):
    its file name names the build (`OPERATOR_BUILD_ANNOTATION`)."""
    cache = images_dir(env)
    base, _pause = build_base(say, cache)
    return build_operator(base, say, cache, root, load=False)


def bundle_name(built: list[Built]) -> str:
    key = hashlib.sha256("\n".join(b.archive.name for b in built).encode()).hexdigest()[:16]
    return f"node-images-{key}.tar"


def bundle(built: list[Built], cache: Path) -> Path:
    """One docker-archive holding every image in `built` (their layers stored once, so the
    node imports the Python base once, not per image)."""
    out = cache / bundle_name(built)
    if out.is_file():
        out.touch()  # in use: not evicted by another checkout's build for a while
        return out
    for image in built:
        if not all(_podman_has(tag) for tag in image.tags):
            _run(["podman", "load", "-q", "-i", str(image.archive)], f"podman load of {image.name}")
    partial = out.with_suffix(".partial")
    tags = [tag for image in built for tag in image.tags]
    _run(
        ["podman", "save", "-q", "-m", "--format", "docker-archive", "-o", str(partial), *tags],
        "podman save of the node's images",
    )
    partial.replace(out)
    evict(cache.glob("node-images-*.tar"), keep=out)
    return out


def node_archive(say: Say, env: Mapping[str, str] = os.environ) -> Path:
    """Build what is missing and return the one archive the real node imports (then remove
    the archives and podman images earlier builds left behind)."""
    built = build_all(say, env)
    archive = bundle(built, images_dir(env))
    prune(built, say, env)
    return archive


def prune(built: list[Built], say: Say, env: Mapping[str, str] = os.environ) -> None:
    """Remove old archives (all but `built`'s and their bundle's) and podman's untagged images
    from earlier builds (see imagegc)."""
    from deepmarket.devcluster import imagegc

    current = {b.archive.name for b in built} | {bundle_name(built)}
    imagegc.prune_archives(images_dir(env), current, say, grace=STALE_AFTER_S)
    if shutil.which("podman"):
        imagegc.prune_podman(say)


def archive_tags(archive: Path) -> list[str]:
    """The image names a docker-archive carries (its manifest.json's RepoTags)."""
    import json
    import tarfile

    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        manifest = json.load(member) if member else []
    return [tag for entry in manifest for tag in entry.get("RepoTags") or []]


def catalog_names() -> set[str]:
    """The catalog's image names of the example modules built here (ours to remove when
    stale, like everything under localhost/deepmarket/)."""
    return {name for module in module_images() for name in module.names}
