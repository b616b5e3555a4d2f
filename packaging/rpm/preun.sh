# fwdguard: %preun. $1 is 0 on removal: stop and disable; on upgrade nothing.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now fwdguard.service || :
fi
