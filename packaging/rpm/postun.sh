# fwdguard: %postun. On upgrade ($1 >= 1) restart the running service on the new binary. rpm has
# no purge: an edited /etc/fwdguard/fwdguard.toml is kept as .rpmsave on removal, and the system
# user stays (Fedora's rule: users are never deleted, their uid may own files).
if [ "$1" -eq 0 ]; then
    rm -f /etc/systemd/system/fwdguard.service.d/50-no-ambient-capabilities.conf
    # The operator's link that turned the BPF hook's privileges on (README, "prevent").
    link=/etc/systemd/system/fwdguard.service.d/fwdguard-bpf.conf
    if [ "$(readlink "$link" 2>/dev/null)" = /usr/share/fwdguard/fwdguard-bpf.conf ]; then
        rm -f "$link"
    fi
    rmdir /etc/systemd/system/fwdguard.service.d 2>/dev/null || :
    # Empty unless an edited configuration was kept as .rpmsave.
    rmdir /etc/fwdguard 2>/dev/null || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart fwdguard.service || :
    else
        journalctl --update-catalog || :
    fi
fi
