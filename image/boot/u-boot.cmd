# HEMS gateway boot script for U-Boot (Raspberry Pi 3, 4, Zero 2 W; QEMU's virt board in the tests).
# image/bootloader.py compiles it into boot.scr on the boot partition; U-Boot's distro boot runs it.
#
# It picks the A/B root slot from hems-boot.env (hems-boot.env.bak when that is unreadable; see
# firmware/slots.py): hems_slot boots normally. When hems_try names a slot and hems_try_left is 1, the trial
# is spent first (hems_try_left=0 written back to both files) and only then is that slot started, with
# hems.trial=1 on its command line: whatever happens to it, the next boot is hems_slot again. A slot whose
# kernel does not load or start is skipped for the other one.

setenv hems_slot
setenv hems_try
setenv hems_try_left
setenv hems_env
for f in hems-boot.env hems-boot.env.bak; do
    if test -z "${hems_env}" && load ${devtype} ${devnum}:${distro_bootpart} ${loadaddr} ${f}; then
        env import -t ${loadaddr} ${filesize} hems_slot hems_try hems_try_left
        if test "${hems_slot}" = a || test "${hems_slot}" = b; then
            setenv hems_env ${f}
        fi
    fi
done
if test -z "${hems_env}"; then
    echo "hems-boot: no usable hems-boot.env: booting slot a"
    setenv hems_slot a
    setenv hems_try
fi

setenv hems_boot ${hems_slot}
setenv hems_trial 0
if test "${hems_try}" = a || test "${hems_try}" = b; then
    if test "${hems_try_left}" = 1; then
        # spend the trial before starting it; no trial when the primary copy cannot be written
        setenv hems_try_left 0
        env export -t ${loadaddr} hems_slot hems_try hems_try_left
        fatwrite ${devtype} ${devnum}:${distro_bootpart} ${loadaddr} hems-boot.env.bak ${filesize}
        if fatwrite ${devtype} ${devnum}:${distro_bootpart} ${loadaddr} hems-boot.env ${filesize}; then
            setenv hems_boot ${hems_try}
            setenv hems_trial 1
        else
            echo "hems-boot: cannot write hems-boot.env: no trial of slot ${hems_try}"
        fi
    fi
fi
if test "${hems_boot}" = a; then
    setenv hems_other b
else
    setenv hems_other a
fi

# The Pi's default load addresses leave too little room for Debian's 33 MB arm64 kernel: here it gets 2-64 MiB
# (its image_size, BSS included), the device tree 64-65 MiB, the initrd from 65 MiB. ${loadaddr} (16 MiB on the
# Pi) lies inside the kernel's room, so every small file (hems-boot.env, slot-X/boot.env) is loaded and imported
# before the kernel is.
if test "${board}" = rpi; then
    setenv kernel_addr_r 0x00200000
    setenv fdt_addr_r 0x04000000
    setenv ramdisk_addr_r 0x04100000
fi

# Start slot ${s}: its kernel, its initrd if any, its command line (slot-X/boot.env), and the device tree U-Boot
# was given (${fdt_addr}): on the Pi the firmware's, which it completed for this board (memory, DMA ranges, MAC
# address); on QEMU the board's. Only without one, the slot's own copy for this board (${fdtfile}).
setenv hems_start 'setenv hems_cmdline; if load ${devtype} ${devnum}:${distro_bootpart} ${loadaddr} slot-${s}/boot.env; then env import -t ${loadaddr} ${filesize} hems_cmdline; fi; if test -z "${hems_cmdline}"; then setenv hems_cmdline "root=PARTLABEL=hems-root-${s} ro rootwait panic=10"; fi; if load ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} slot-${s}/vmlinuz; then setenv hems_initrd -; if load ${devtype} ${devnum}:${distro_bootpart} ${ramdisk_addr_r} slot-${s}/initrd.img; then setenv hems_initrd ${ramdisk_addr_r}:${filesize}; fi; setenv hems_fdt ${fdt_addr}; if test -z "${hems_fdt}" && test -n "${fdtfile}" && load ${devtype} ${devnum}:${distro_bootpart} ${fdt_addr_r} slot-${s}/${fdtfile}; then setenv hems_fdt ${fdt_addr_r}; fi; if test -z "${hems_fdt}"; then setenv hems_fdt ${fdtcontroladdr}; fi; if test "${hems_trial}" = 1; then setenv bootargs "${hems_cmdline} hems.trial=1"; else setenv bootargs "${hems_cmdline}"; fi; echo "hems-boot: starting slot ${s} (trial ${hems_trial}, env ${hems_env})"; for w in ${bootargs}; do echo "hems-boot: arg ${w}"; done; booti ${kernel_addr_r} ${hems_initrd} ${hems_fdt}; echo "hems-boot: the kernel of slot ${s} did not start"; else echo "hems-boot: slot ${s} has no kernel"; fi'

setenv s ${hems_boot}
run hems_start
setenv s ${hems_other}
setenv hems_trial 0
run hems_start
echo "hems-boot: neither slot started: resetting in 10 s"
sleep 10
reset
