# %postun of earshot-collector: $1 is 0 on erase. The state directory and the generated secrets
# are kept (rpm has no purge): see /usr/share/doc/earshot-collector/README.md to delete them.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
