# %post of earshot-collector: $1 is 1 on install, 2 or more on upgrade.
if [ "$1" -ge 2 ]; then
    /usr/lib/earshot-collector/maint configure upgrade
else
    /usr/lib/earshot-collector/maint configure first
fi
