#!/usr/bin/env python3
"""Write a Raspberry Pi OS image to an SD card, verify it, and leave first-boot settings on its boot partition.

    sudo deploy/flash.py 2024-11-19-raspios-bookworm-arm64-lite.img.xz /dev/sdX \\
        --hostname mirror-hall --user pi --password-file pw.txt --ssh-key ~/.ssh/id_ed25519.pub \\
        --wifi-ssid Salon --wifi-password-file wifi.txt --wifi-country GB --dry-run

Safety: the target must be a whole block device that holds no mounted, swap or otherwise used file system
(checked in /proc/self/mountinfo, /proc/swaps, sysfs holders and lsblk); it is opened with O_EXCL, which the
kernel refuses for a device in use. A regular file is accepted only with --allow-file (tests, image building).

Checks: the image's sha256 (--sha256, --sha256-file, or IMAGE.sha256 beside it) before anything is written,
and a read-back of the written bytes compared with the image's decompressed sha256 afterwards. Every refusal
comes before the first byte is written, and --dry-run runs them all: among them the decompressed image must fit
the card (its size from the .xz index, or counted), and with first-boot settings its first partition must be FAT.

First boot (Raspberry Pi OS Bookworm): custom.toml on the boot partition (hostname, user with a SHA-512
password hash, ssh keys, Wi-Fi with a precomputed WPA PSK, locale), applied once by the image's firstboot;
--bootfs-format legacy writes userconf.txt and ssh instead (user and ssh only) for images older than custom.toml.
Files go onto the FAT partition with mtools (mcopy), so nothing is mounted.

Exit codes: 0 done (or dry run passed), 1 failed while writing or verifying, 2 refused before writing.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import dataclasses
import fcntl
import gzip
import hashlib
import json
import logging
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

_log = logging.getLogger("flash")

CHUNK = 4 * 1024 * 1024
FAT_PARTITION_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}


class Refused(Exception):
    """Something is wrong before a byte is written (exit code 2)."""


class Failed(Exception):
    """Writing or verifying went wrong (exit code 1)."""


# ---- the image ----------------------------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def expected_sha256(image: Path, sha256: str | None, sha256_file_arg: Path | None) -> str | None:
    """The checksum to hold the image to: given, from a file in `sha256sum` format, or IMAGE.sha256 beside it."""
    if sha256:
        value = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise Refused(f"--sha256: {sha256!r} is not 64 hex digits")
        return value
    source = sha256_file_arg or image.with_name(image.name + ".sha256")
    if not source.exists():
        if sha256_file_arg:
            raise Refused(f"{source}: checksum file not found")
        return None
    for line in source.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 1 and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            named = parts[1].lstrip("*") if len(parts) > 1 else image.name
            if Path(named).name == image.name:
                return parts[0].lower()
    raise Refused(f"{source}: no sha256 line for {image.name}")


UNREAD_SUFFIXES = {".zip": "unzip it first (a .zip may hold several files)", ".bz2": "bunzip2 it first",
                   ".zst": "unzstd it first", ".7z": "extract it first (7z x)", ".lz4": "unlz4 it first"}


def open_image(image: Path):
    """A binary stream of the raw disk image, decompressing .xz and .gz (any case) on the fly."""
    suffix = image.suffix.lower()
    if suffix == ".xz":
        return lzma.open(image, "rb")
    if suffix == ".gz":
        return gzip.open(image, "rb")
    if suffix in UNREAD_SUFFIXES:
        raise Refused(f"{image}: {UNREAD_SUFFIXES[suffix]}; this script reads .img, .img.xz and .img.gz")
    return image.open("rb")


def image_head(image: Path) -> bytes:
    """The raw image's first sector (its MBR); Refused when the file cannot even start to decompress."""
    try:
        with open_image(image) as src:
            return src.read(512)
    except (OSError, lzma.LZMAError, EOFError) as e:
        raise Refused(f"{image}: cannot read the image: {e}") from None


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("bad number")
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not b & 0x80:
            return value, pos


def xz_size(image: Path) -> int | None:
    """The decompressed size of an .xz file from its streams' indexes, read from the end of the file (nothing is
    decompressed); None when the file does not parse as .xz that way."""
    total = 0
    with image.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        try:
            while end > 0:
                if end < 24:
                    return None
                f.seek(end - 4)
                if f.read(4) == bytes(4):  # stream padding
                    end -= 4
                    continue
                f.seek(end - 12)
                footer = f.read(12)
                if footer[10:12] != b"YZ":
                    return None
                index_size = (int.from_bytes(footer[4:8], "little") + 1) * 4
                index_start = end - 12 - index_size
                if index_start < 12:
                    return None
                f.seek(index_start)
                index = f.read(index_size)
                if index[0] != 0:
                    return None
                count, pos = _varint(index, 1)
                blocks = 0
                for _ in range(count):
                    unpadded, pos = _varint(index, pos)
                    size, pos = _varint(index, pos)
                    blocks += (unpadded + 3) & ~3
                    total += size
                end = index_start - blocks - 12
                if end < 0:
                    return None
                f.seek(end)
                if f.read(6) != b"\xfd7zXZ\x00":
                    return None
        except ValueError:
            return None
    return total


def image_size(image: Path) -> int:
    """The decompressed image's size in bytes, known before anything is written."""
    if image.suffix.lower() == ".xz" and (size := xz_size(image)) is not None:
        return size
    if image.suffix.lower() not in (".xz", ".gz"):
        return image.stat().st_size
    _log.info("measuring %s decompressed (its size is not in its header)", image.name)  # .gz keeps it mod 4 GiB
    size = 0
    try:
        with open_image(image) as src:
            while chunk := src.read(CHUNK):
                size += len(chunk)
    except (OSError, lzma.LZMAError, EOFError) as e:
        raise Refused(f"{image}: cannot be decompressed: {e}") from None
    return size


# ---- the target ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Target:
    path: Path
    is_block: bool
    size: int | None  # bytes; None for a regular file (grows as written)


def _sys_block_dir(rdev: int) -> Path:
    return Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}")


def _device_numbers(sysdir: Path) -> set[tuple[int, int]]:
    """The disk's own major:minor and those of its partitions."""
    numbers = set()
    for dev_file in [sysdir / "dev", *sysdir.glob("*/dev")]:
        major, minor = dev_file.read_text().strip().split(":")
        numbers.add((int(major), int(minor)))
    return numbers


def _mounted(numbers: set[tuple[int, int]]) -> list[str]:
    """Mount points (and swap) of any of these devices, from /proc/self/mountinfo and /proc/swaps."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        major, minor = (int(n) for n in fields[2].split(":"))
        source = line.split(" - ", 1)[1].split()[1] if " - " in line else ""
        if (major, minor) in numbers or _rdev_of(source) in numbers:
            found.append(f"{source} mounted at {fields[4]}")
    swaps = Path("/proc/swaps")
    if swaps.exists():
        for line in swaps.read_text().splitlines()[1:]:
            source = line.split()[0]
            if _rdev_of(source) in numbers:
                found.append(f"{source} used as swap")
    return found


def _rdev_of(path: str) -> tuple[int, int] | None:
    if not path.startswith("/dev/"):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.major(st.st_rdev), os.minor(st.st_rdev)) if stat.S_ISBLK(st.st_mode) else None


def _holders(sysdir: Path) -> list[str]:
    """Device-mapper, RAID or LVM devices built on the disk or its partitions."""
    return sorted({h.name for d in [sysdir, *sysdir.glob("*/")] for h in (d / "holders").glob("*")})


def _lsblk_mountpoints(path: Path) -> list[str]:
    """lsblk's view, as a second opinion (it also sees mounts in other namespaces via udev's database)."""
    if not shutil.which("lsblk"):
        return []
    out = subprocess.run(["lsblk", "-J", "-o", "NAME,MOUNTPOINTS", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        return []
    found = []

    def walk(node):
        found.extend(f"{node['name']} mounted at {m}" for m in node.get("mountpoints") or [] if m)
        for child in node.get("children", []):
            walk(child)

    for device in json.loads(out.stdout).get("blockdevices", []):
        walk(device)
    return found


def check_target(path: Path, allow_file: bool) -> Target:
    """Refuse anything but an unused whole block device (or, with allow_file, a regular file)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if allow_file and path.parent.is_dir():
            return Target(path, is_block=False, size=None)
        raise Refused(f"{path}: no such device") from None
    if stat.S_ISREG(st.st_mode):
        if not allow_file:
            raise Refused(f"{path}: a regular file, not a block device (--allow-file writes image files)")
        return Target(path, is_block=False, size=None)
    if not stat.S_ISBLK(st.st_mode):
        raise Refused(f"{path}: not a block device")
    sysdir = _sys_block_dir(st.st_rdev).resolve()
    if (sysdir / "partition").exists():
        raise Refused(f"{path}: a partition; give the whole card (e.g. /dev/sdX, /dev/mmcblk0)")
    numbers = _device_numbers(sysdir)
    in_use = _mounted(numbers) + _lsblk_mountpoints(path)
    if in_use:
        raise Refused(f"{path}: holds a file system in use: {'; '.join(sorted(set(in_use)))}")
    holders = _holders(sysdir)
    if holders:
        raise Refused(f"{path}: in use by {', '.join(holders)} (LVM, RAID or encryption)")
    if (sysdir / "ro").exists() and (sysdir / "ro").read_text().strip() == "1":
        raise Refused(f"{path}: read-only (an SD card's lock switch?)")
    size = int((sysdir / "size").read_text()) * 512
    if size == 0:
        raise Refused(f"{path}: no medium (size 0)")
    return Target(path, is_block=True, size=size)


# ---- first-boot settings ------------------------------------------------------------------------------------

def toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c >= " " or c == "\t" else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def wpa_psk(ssid: str, passphrase: str) -> str:
    """The 256-bit WPA PSK as wpa_passphrase computes it, so the card never holds the plain passphrase."""
    if not (8 <= len(passphrase) <= 63 and all(" " <= c <= "~" for c in passphrase)):
        raise Refused("Wi-Fi passphrase: WPA needs 8 to 63 printable ASCII characters")
    return hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), 4096, 32).hex()


def hash_password(plain: str) -> str:
    """SHA-512 crypt hash via openssl (what userconf and custom.toml expect)."""
    if not shutil.which("openssl"):
        raise Refused("openssl is needed to hash the password (or give --password-hash)")
    out = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=plain, capture_output=True, text=True)
    if out.returncode != 0:
        raise Refused(f"openssl passwd failed: {out.stderr.strip()}")
    return out.stdout.strip()


ZONEINFO = Path("/usr/share/zoneinfo")


def country_codes(code: str) -> set[str]:
    """The ISO 3166 codes of this machine's tz database (what raspi-config checks a Wi-Fi country against);
    without that file, `code` itself (its form is checked by the caller)."""
    try:
        lines = (ZONEINFO / "iso3166.tab").read_text(encoding="utf-8").splitlines()
    except OSError:
        return {code}
    return {line.split("\t", 1)[0] for line in lines if line and not line.startswith("#")}


XKB_RULES = Path("/usr/share/X11/xkb/rules/base.lst")
SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                 "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")


def keyboard_layouts(layout: str) -> set[str]:
    """The XKB layouts this machine knows (what the image's first boot hands its keymap to); without the rules file,
    `layout` itself (its form is checked by the caller)."""
    try:
        lines = XKB_RULES.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {layout}
    start = lines.index("! layout") + 1 if "! layout" in lines else len(lines)
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("!")), len(lines))
    return {line.split()[0] for line in lines[start:end] if line.strip()}


def ssh_key_problem(line: str) -> str:
    """Why a line is not an OpenSSH public key ('' when it is one): a card that allows key logins only, with a key
    that is no key, locks its user out. The type, base64 data, and the type named again inside the data, as
    ssh-keygen -l reads it."""
    parts = line.split()
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        return f"not an OpenSSH public key line ('TYPE BASE64 [comment]', TYPE one of {', '.join(SSH_KEY_TYPES)})"
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return "its key data is not base64"
    size = int.from_bytes(blob[:4], "big")
    if blob[4:4 + size] != parts[0].encode():
        return f"its key data is not a {parts[0]} key"
    return ""


@dataclasses.dataclass
class FirstBoot:
    hostname: str = ""
    user: str = ""
    password_hash: str = ""
    ssh_keys: list[str] = dataclasses.field(default_factory=list)
    ssh_password_auth: bool = False
    wifi_ssid: str = ""
    wifi_psk: str = ""
    wifi_hidden: bool = False
    wifi_country: str = ""
    timezone: str = ""
    keymap: str = ""

    def validate(self) -> None:
        if self.hostname and not re.fullmatch(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)", self.hostname):
            raise Refused(f"--hostname: {self.hostname!r} is not a valid host name (letters, digits, '-')")
        if self.user and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", self.user):
            raise Refused(f"--user: {self.user!r} is not a valid user name")
        if self.user and self.user == "root":
            raise Refused("--user: root cannot be the first user")
        if self.password_hash and not self.password_hash.startswith("$"):
            raise Refused("--password-hash: expected a crypt hash such as $6$... (openssl passwd -6)")
        if self.password_hash and not self.user:
            raise Refused("a password needs --user")
        if self.wifi_country and not (re.fullmatch(r"[A-Z]{2}", self.wifi_country)
                                      and self.wifi_country in country_codes(self.wifi_country)):
            raise Refused(f"--wifi-country: {self.wifi_country!r} is not a two-letter ISO 3166 country code (e.g. GB)")
        if self.wifi_psk and not self.wifi_ssid:
            raise Refused("a Wi-Fi password needs --wifi-ssid")
        if self.wifi_ssid and not self.wifi_country:  # Raspberry Pi OS keeps the radio blocked until one is set
            raise Refused("--wifi-ssid needs --wifi-country (Wi-Fi stays off until the country is set)")
        if len(self.wifi_ssid.encode()) > 32:
            raise Refused(f"--wifi-ssid: {len(self.wifi_ssid.encode())} bytes; an SSID holds at most 32")
        # the first boot writes the SSID raw into a NetworkManager line: a control character breaks the file, and
        # spaces at either end are lost
        if any(ord(c) < 32 or ord(c) == 127 for c in self.wifi_ssid) or self.wifi_ssid != self.wifi_ssid.strip():
            raise Refused(f"--wifi-ssid: {self.wifi_ssid!r} holds a control character or spaces at an end, which "
                          "the image's first boot cannot write into its Wi-Fi connection")
        if self.keymap and not (re.fullmatch(r"[a-z][a-z0-9_]{1,15}", self.keymap)
                                and self.keymap in keyboard_layouts(self.keymap)):
            raise Refused(f"--keymap: {self.keymap!r} is not a keyboard layout (e.g. gb, us, de; see {XKB_RULES})")
        if self.timezone and not (re.fullmatch(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*", self.timezone)
                                  and (not ZONEINFO.is_dir() or (ZONEINFO / self.timezone).is_file())):
            raise Refused(f"--timezone: {self.timezone!r} is not a time zone (e.g. Europe/London; see {ZONEINFO})")
        for key in self.ssh_keys:
            if problem := ssh_key_problem(key):
                raise Refused(f"ssh key {key[:30]!r}...: {problem}")

    def empty(self) -> bool:
        return self == FirstBoot()

    def custom_toml(self) -> str:
        """Raspberry Pi OS's first-boot customisation file (read by raspberrypi-sys-mods' init_config)."""
        lines = ["# Written by Hairmirror's deploy/flash.py; applied once on first boot, then deleted.",
                 "config_version = 1"]
        if self.hostname:
            lines += ["", "[system]", f"hostname = {toml_string(self.hostname)}"]
        if self.user:
            lines += ["", "[user]", f"name = {toml_string(self.user)}"]
            if self.password_hash:
                lines += [f"password = {toml_string(self.password_hash)}", "password_encrypted = true"]
        if self.ssh_keys or self.ssh_password_auth:
            keys = ", ".join(toml_string(k) for k in self.ssh_keys)
            lines += ["", "[ssh]", "enabled = true",
                      f"password_authentication = {'true' if self.ssh_password_auth else 'false'}",
                      f"authorized_keys = [{keys}]"]
        if self.wifi_ssid or self.wifi_country:
            lines += ["", "[wlan]"]
            if self.wifi_ssid:
                lines += [f"ssid = {toml_string(self.wifi_ssid)}"]
                if self.wifi_psk:
                    lines += [f"password = {toml_string(self.wifi_psk)}", "password_encrypted = true"]
                lines += [f"hidden = {'true' if self.wifi_hidden else 'false'}"]
            if self.wifi_country:
                lines += [f"country = {toml_string(self.wifi_country)}"]
        if self.timezone or self.keymap:
            lines += ["", "[locale]"]
            lines += [f"keymap = {toml_string(self.keymap)}"] if self.keymap else []
            lines += [f"timezone = {toml_string(self.timezone)}"] if self.timezone else []
        return "\n".join(lines) + "\n"

    def files(self, fmt: str) -> dict[str, str]:
        """Boot-partition files for this image format: custom-toml (current Bookworm) or legacy."""
        if self.empty():
            return {}
        if fmt == "custom-toml":
            return {"custom.toml": self.custom_toml()}
        unsupported = [name for name, value in [("--hostname", self.hostname), ("--wifi-ssid", self.wifi_ssid),
                                                ("--wifi-country", self.wifi_country), ("--ssh-key", self.ssh_keys),
                                                ("--timezone", self.timezone), ("--keymap", self.keymap)] if value]
        if unsupported:
            raise Refused(f"--bootfs-format legacy cannot set {', '.join(unsupported)} (use custom-toml)")
        files = {}
        if self.user:
            if not self.password_hash:
                raise Refused("--bootfs-format legacy needs a password for the user")
            files["userconf.txt"] = f"{self.user}:{self.password_hash}\n"
        if self.ssh_password_auth:
            files["ssh"] = ""
        return files


# ---- writing ------------------------------------------------------------------------------------------------

def write_image(image: Path, target: Target) -> tuple[int, str]:
    """Stream the decompressed image onto the target; returns (bytes written, their sha256)."""
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    # O_EXCL on a block device: the kernel refuses it while the device is mounted or otherwise claimed.
    flags |= os.O_EXCL if target.is_block else os.O_CREAT | os.O_TRUNC
    digest, written = hashlib.sha256(), 0
    try:
        fd = os.open(target.path, flags, 0o644)
    except OSError as e:
        raise Failed(f"{target.path}: cannot open for writing: {e.strerror}") from None
    try:
        with open_image(image) as src:
            while chunk := src.read(CHUNK):
                if target.size is not None and written + len(chunk) > target.size:
                    raise Failed(f"{target.path}: the image is larger than the card ({target.size} bytes)")
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                digest.update(chunk)
                written += len(chunk)
                if written % (256 * CHUNK) < CHUNK:
                    _log.info("written %d MiB", written >> 20)
        os.fsync(fd)
    except (OSError, lzma.LZMAError, EOFError) as e:
        raise Failed(f"writing {image} to {target.path} failed after {written} bytes: {e}") from None
    finally:
        os.close(fd)
    return written, digest.hexdigest()


def read_back(target: Target, length: int) -> str:
    """sha256 of the first `length` bytes, read from the medium rather than the page cache."""
    digest, left = hashlib.sha256(), length
    fd = os.open(target.path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while left:
            chunk = os.read(fd, min(CHUNK, left))
            if not chunk:
                raise Failed(f"{target.path}: ended after {length - left} of {length} bytes")
            digest.update(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def boot_offset_in(mbr: bytes, where: str, error: type[Exception] = Failed) -> int:
    """Byte offset of the first (FAT boot) partition, from the MBR that Raspberry Pi OS images use."""
    if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
        raise error(f"{where}: no MBR partition table (not a Raspberry Pi OS image?)")
    entry = mbr[446:462]
    ptype, start = entry[4], int.from_bytes(entry[8:12], "little")
    if ptype not in FAT_PARTITION_TYPES or start == 0:
        raise error(f"{where}: partition 1 is type 0x{ptype:02x}, not the FAT boot partition")
    return start * 512


def boot_partition_offset(path: Path) -> int:
    """The boot partition's offset on the written card (checked in the image before writing, too)."""
    with open(path, "rb") as f:
        return boot_offset_in(f.read(512), f"{path} after writing")


def write_boot_files(path: Path, files: dict[str, str]) -> None:
    """Copy files onto the FAT boot partition with mtools, without mounting anything."""
    offset = boot_partition_offset(path)
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            local = Path(tmp) / name
            local.write_text(text)
            out = subprocess.run(["mcopy", "-o", "-i", f"{path}@@{offset}", str(local), f"::/{name}"],
                                 capture_output=True, text=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
            if out.returncode != 0:
                raise Failed(f"writing {name} to the boot partition failed: {out.stderr.strip()}")
            _log.info("boot partition: wrote %s", name)


# ---- command line -------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Exit codes: 0 done, 1 writing/verifying failed, 2 refused before writing.")
    p.add_argument("image", type=Path, help="Raspberry Pi OS image: .img, .img.xz or .img.gz")
    p.add_argument("target", type=Path, help="the whole card, e.g. /dev/sdX or /dev/mmcblk0")
    check = p.add_mutually_exclusive_group()
    check.add_argument("--sha256", help="expected sha256 of the image file as downloaded")
    check.add_argument("--sha256-file", type=Path, help="sha256sum-format file (default: IMAGE.sha256 if present)")
    check.add_argument("--skip-checksum", action="store_true", help="write an image without a known checksum")
    p.add_argument("--dry-run", action="store_true", help="check everything and show the plan; write nothing")
    p.add_argument("--yes", action="store_true", help="do not ask before overwriting the card")
    p.add_argument("--allow-file", action="store_true", help="let TARGET be a regular file (tests, image building)")
    p.add_argument("--no-readback", action="store_true", help="skip reading the card back to compare")
    first = p.add_argument_group("first boot (written to the boot partition)")
    first.add_argument("--bootfs-format", choices=["custom-toml", "legacy"], default="custom-toml",
                       help="custom-toml: current Bookworm images (default); legacy: userconf.txt + ssh only")
    first.add_argument("--hostname", default="")
    first.add_argument("--user", default="", help="the first user's name (replaces the image's setup wizard)")
    pw = first.add_mutually_exclusive_group()
    pw.add_argument("--password-hash", default="", help="crypt hash, e.g. from: openssl passwd -6")
    pw.add_argument("--password-file", type=Path, help="file whose first line is the password (hashed here)")
    first.add_argument("--ssh-key", type=Path, action="append", default=[], help="public key file (repeatable)")
    first.add_argument("--ssh-password-auth", action="store_true", help="enable ssh with password logins")
    first.add_argument("--wifi-ssid", default="")
    first.add_argument("--wifi-password-file", type=Path, help="file whose first line is the Wi-Fi passphrase")
    first.add_argument("--wifi-hidden", action="store_true")
    first.add_argument("--wifi-country", default="", help="two-letter regulatory domain, e.g. GB (enables Wi-Fi)")
    first.add_argument("--timezone", default="", help="e.g. Europe/London")
    first.add_argument("--keymap", default="", help="e.g. gb")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def _filled_lines(path: Path, what: str) -> list[str]:
    """The file's lines that are not blank; Refused when it cannot be read or holds none."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise Refused(f"{path}: cannot read the {what}: {e.strerror}") from None
    filled = [line for line in lines if line.strip()]
    if not filled:
        raise Refused(f"{path}: the {what} file is empty")
    return filled


def _first_line(path: Path, what: str) -> str:
    return _filled_lines(path, what)[0]


def first_boot_from_args(args: argparse.Namespace) -> FirstBoot:
    keys = []
    for key_file in args.ssh_key:
        found = [line.strip() for line in _filled_lines(key_file, "ssh key") if not line.lstrip().startswith("#")]
        if not found:  # a file of comments would leave the card without a key and ssh off
            raise Refused(f"{key_file}: no key in it (only comments or blank lines)")
        keys += found
    password_hash = args.password_hash
    if args.password_file:
        password_hash = hash_password(_first_line(args.password_file, "password"))
    psk = ""
    if args.wifi_password_file:
        psk = wpa_psk(args.wifi_ssid, _first_line(args.wifi_password_file, "Wi-Fi passphrase"))
    fb = FirstBoot(hostname=args.hostname, user=args.user, password_hash=password_hash, ssh_keys=keys,
                   ssh_password_auth=args.ssh_password_auth, wifi_ssid=args.wifi_ssid, wifi_psk=psk,
                   wifi_hidden=args.wifi_hidden, wifi_country=args.wifi_country.upper(),
                   timezone=args.timezone, keymap=args.keymap)
    fb.validate()
    return fb


def confirm(target: Target) -> None:
    if not sys.stdin.isatty():
        raise Refused("not a terminal: pass --yes to overwrite the card without asking")
    answer = input(f"Everything on {target.path} will be lost. Type its name ({target.path.name}) to go on: ")
    if answer.strip() != target.path.name:
        raise Refused("not confirmed")


def run(args: argparse.Namespace) -> int:
    image = args.image
    if not image.is_file():
        raise Refused(f"{image}: image not found")
    boot_files = first_boot_from_args(args).files(args.bootfs_format)
    if boot_files and not shutil.which("mcopy"):
        raise Refused("mcopy (mtools) is needed to write first-boot settings: apt install mtools")
    target = check_target(args.target, args.allow_file)
    if target.path.exists() and os.path.samefile(image, target.path):  # the write would truncate the image first
        raise Refused(f"{target.path} is the image itself")

    want = expected_sha256(image, args.sha256, args.sha256_file)
    if want is None and not args.skip_checksum:
        raise Refused(f"{image}: no checksum (give --sha256, --sha256-file or put {image.name}.sha256 beside it; "
                      "--skip-checksum to write it unchecked)")
    if want is not None:
        got = sha256_file(image)
        if got != want:
            raise Refused(f"{image}: sha256 {got} does not match the expected {want}")
        _log.info("image sha256 ok: %s", got)

    # what the writing would otherwise find out only after it had written: all before the first byte
    head, raw_size = image_head(image), image_size(image)
    if target.size is not None and raw_size > target.size:
        raise Refused(f"{target.path}: the image is larger than the card ({raw_size} bytes decompressed, "
                      f"the card holds {target.size})")
    if len(head) < 512 or head[510:512] != b"\x55\xaa":  # MBR or GPT's protective MBR: a disk image
        raise Refused(f"{image}: not a disk image (no partition table in its first sector)")
    if boot_files and boot_offset_in(head, f"{image} (the image)", Refused) >= raw_size:
        raise Refused(f"{image}: its boot partition starts beyond the image's end ({raw_size} bytes)")

    size = f"{target.size / 1e9:.1f} GB " if target.size else ""
    print(f"plan: write {image} ({raw_size} bytes decompressed) to {size}"
          f"{'block device' if target.is_block else 'file'} {target.path}"
          f"{', read it back' if not args.no_readback else ''}"
          f"{', then ' + ', '.join(boot_files) + ' on its boot partition' if boot_files else ''}")
    for name, text in boot_files.items():
        print(f"--- {name}\n{redacted(text)}", end="")
    if args.dry_run:
        print("dry run: nothing written")
        return 0
    if not args.yes:
        confirm(target)

    with held_from_udev(target):
        written = write_and_check(image, raw_size, target, boot_files, args.no_readback)
        os.sync()  # on the card before udev probes it
    print(f"done: {written} bytes on {target.path}" + (", read back and verified" if not args.no_readback else ""))
    return 0


@contextlib.contextmanager
def held_from_udev(target: Target):
    """A block device locked (flock LOCK_EX, systemd's block device locking) from the write to the last first-boot
    file: udev probes a card once a writer closes it, and a desktop then mounts its partitions; mcopy must not write
    under a mounted file system. Released, the card is probed once, whole."""
    if not target.is_block:
        yield
        return
    fd = os.open(target.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_and_check(image: Path, raw_size: int, target: Target, boot_files: dict[str, str],
                    no_readback: bool) -> int:
    """Write the image (`raw_size` bytes decompressed), read it back (unless `no_readback`) and add the first-boot
    files; the bytes written."""
    written, written_sha = write_image(image, target)
    _log.info("wrote %d bytes (sha256 %s)", written, written_sha)
    if written != raw_size:
        raise Failed(f"{target.path}: wrote {written} bytes, the image holds {raw_size}")
    if not no_readback:
        back = read_back(target, written)
        if back != written_sha:
            raise Failed(f"{target.path}: read-back sha256 {back} differs from the image's {written_sha}")
        _log.info("read-back matches")
    if boot_files:
        write_boot_files(target.path, boot_files)
    return written


def redacted(text: str) -> str:
    """A first-boot file as the plan prints it: custom.toml's passwords and userconf.txt's hash replaced."""
    text = re.sub(r'(password = )"[^"]*"', r'\1"<redacted>"', text)
    return re.sub(r"^([^:\n]+):\$.*$", r"\1:<redacted>", text, flags=re.M)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="flash: %(message)s")
    try:
        return run(args)
    except Refused as e:
        print(f"flash: refused: {e}", file=sys.stderr)
        return 2
    except Failed as e:
        print(f"flash: failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flash: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
