# %post of earshot-agent: $1 is 1 on install, 2 or more on upgrade.
if [ "$1" -ge 2 ]; then
    /usr/lib/earshot-agent/maint configure upgrade
else
    /usr/lib/earshot-agent/maint configure first
fi
