# fwdguard: %post. $1 is 1 on install, 2 on upgrade (the old package's %postun restarts).

# The user from /usr/lib/sysusers.d/fwdguard.conf; useradd where systemd-sysusers is missing
# (or too old for the file).
systemd-sysusers fwdguard.conf 2>/dev/null || getent passwd fwdguard >/dev/null ||
    useradd --system --user-group --no-create-home --home-dir / \
        --shell /sbin/nologin --comment "fwdguard sysctl guard" fwdguard

# EL7: systemd 219 ignores AmbientCapabilities= (new in 229) and kernel 3.10 has no ambient
# capabilities (4.3), so the user fwdguard would run without CAP_NET_ADMIN and every restore
# would fail. There the service runs as root instead, still limited to CAP_NET_ADMIN by
# CapabilityBoundingSet= and NoNewPrivileges=.
dropin=/etc/systemd/system/fwdguard.service.d/50-no-ambient-capabilities.conf
systemd_version=$(systemctl --version 2>/dev/null | sed -n '1s/^systemd \([0-9]*\).*/\1/p')
if [ "${systemd_version:-0}" -lt 229 ] || ! grep -q '^CapAmb:' /proc/self/status; then
    mkdir -p "${dropin%/*}"
    printf '%s\n' "# Written by the fwdguard package: no ambient capabilities here (systemd < 229 or kernel < 4.3)." \
        "[Service]" "User=root" "Group=root" >"$dropin"
else
    rm -f "$dropin"
fi

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    journalctl --update-catalog || :
    if [ "$1" -eq 1 ]; then
        systemctl preset fwdguard.service || :
        if systemctl is-enabled --quiet fwdguard.service; then
            systemctl start fwdguard.service || :
        fi
    fi
fi
