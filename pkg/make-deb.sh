#!/bin/sh
# make package: vigil_VERSION_ARCH.deb from a meson build folder, without a
# second build: ninja brings the folder up to date, `meson install
# --destdir` stages what it installs (pkg/meson.build says what), and
# dpkg-deb packs it with the control files made here (Depends from
# dpkg-shlibdeps). No debhelper: the maintainer scripts in pkg/ are what
# dh_installsystemd and dh_installsysusers would write.
#
#   pkg/make-deb.sh [BUILD_DIR [OUT_DIR]]    (defaults: build, .)
#
# Prints the .deb's path on its last line.
set -eu

build=${1:-build}
out=${2:-.}
pkg=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$pkg")

die() { echo "make-deb: $*" >&2; exit 1; }
[ -f "$build/build.ninja" ] || die "$build is not a meson build folder (meson setup $build)"
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The package installs into /usr, /etc and /var: a folder set up before
# meson.build defaulted to prefix /usr is switched (install paths only,
# nothing is rebuilt for it).
opt() {
	meson introspect --buildoptions "$build" |
		/usr/bin/python3 -c "import json, sys; print(next(o['value'] for o in json.load(sys.stdin) if o['name'] == sys.argv[1]))" "$1"
}
if [ "$(opt prefix)" != /usr ] || [ "$(opt sysconfdir)" != /etc ] || [ "$(opt localstatedir)" != /var ]; then
	echo "make-deb: $build: setting prefix /usr, sysconfdir /etc, localstatedir /var"
	meson configure "$build" -Dprefix=/usr -Dsysconfdir=/etc -Dlocalstatedir=/var >/dev/null
fi

ninja -C "$build"

version=$(meson introspect --projectinfo "$build" |
	/usr/bin/python3 -c "import json, sys; print(json.load(sys.stdin)['version'])")
arch=$(dpkg --print-architecture)
deb="$out/vigil_${version}_${arch}.deb"

stage=$(mktemp -d "${TMPDIR:-/tmp}/vigil-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM
root="$stage/root"

meson install -C "$build" --destdir "$root" --no-rebuild --quiet
[ -x "$root/usr/bin/vigild" ] || die "meson install put no usr/bin/vigild in $root"
# Stripped as dh_strip does, the installed copies only: the build folder
# keeps its symbols.
for f in "$root"/usr/bin/*; do
	strip --remove-section=.comment --remove-section=.note --strip-unneeded "$f"
done

# The Debian files lintian asks for. The version has no Debian revision
# (a native package), so the changelog is changelog.gz.
doc="$root/usr/share/doc/vigil"
install -m 0644 "$pkg/copyright" "$doc/copyright"
when=$(git -C "$src" log -1 --format=%cD 2>/dev/null || date -R)
sed -e "s/@VERSION@/$version/" -e "s/@DATE@/$when/" "$pkg/changelog.in" |
	gzip -9n > "$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

# Only root writes anything in the package; dpkg-deb --root-owner-group
# makes root the owner.
find "$root" -type d -exec chmod 0755 {} +
chmod -R go-w "$root"

# Depends: the shared libraries the programs link (dpkg-shlibdeps reads a
# debian/control, so it runs in the staging folder), then what vigild and
# the tools run but do not link: the GStreamer elements of the shipped
# configuration, Python for the tools, systemd-sysusers for the user.
# Libraries from outside Debian (the CUDA toolkit in /usr/local/cuda, when
# meson found it) have no package to depend on: named here, since a station
# without them cannot start vigild. -Dcuda=disabled makes a build without.
mkdir -p "$stage/debian"
printf 'Source: vigil\n\nPackage: vigil\nArchitecture: any\n' > "$stage/debian/control"
foreign=$(ldd "$root"/usr/bin/* | awk '$3 ~ /^\/(usr\/local|opt)\// { print $1 }' | sort -u | tr '\n' ' ')
if [ -n "$foreign" ]; then
	echo "make-deb: warning: the programs link libraries no Debian package provides:" \
		"${foreign}(the station needs them; meson configure $build -Dcuda=disabled for a build without)" >&2
fi
shlibs=$(cd "$stage" && dpkg-shlibdeps -O --ignore-missing-info -e root/usr/bin/* 2>/dev/null |
	sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no libraries"

mkdir -p "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: vigil
Version: $version
Architecture: $arch
Maintainer: Vigil maintainers <maintainers@users.noreply.r-seed-2f3738ef.example>
Installed-Size: $size
Depends: $shlibs, gstreamer1.0-plugins-base, gstreamer1.0-plugins-good, python3, systemd | systemd-standalone-sysusers | systemd-sysusers
Suggests: python3-numpy, python3-torch, python3-onnx, python3-opencv, mbpoll
Section: misc
Priority: optional
Description: industrial inspection daemon for the end of a production line
 vigild takes each part's camera frame and vibration window, runs one fused
 vision-plus-vibration defect model, tells the line PLC over Modbus whether
 to reject the part and logs every result to SQLite, with a QA review page.
 .
 This package holds vigild as a systemd service (user vigil, state in
 /var/lib/vigil, /etc/vigil/vigild.conf running a simulated line), vigilctl,
 vigil-sim, the evaluation, calibration and feature tools, the training
 tools (Python), the model packages and the documentation.
CONTROL
# Every file under /etc is a conffile: an integrator's edits survive upgrades.
(cd "$root" && find etc -type f | sed 's,^,/,' | sort) > "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do
	install -m 0755 "$pkg/$s" "$root/DEBIAN/$s"
done
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's,^\./,,' | LC_ALL=C sort |
	xargs -d '\n' md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
