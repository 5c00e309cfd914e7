# %preun of earshot-collector: $1 is 0 on erase, 1 or more on upgrade (keep running then).
if [ "$1" -eq 0 ]; then
    /usr/lib/earshot-collector/maint remove
fi
