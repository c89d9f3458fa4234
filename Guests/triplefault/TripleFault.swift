// triplefault: crashes on purpose, for the host's crash handling tests.
//
// With an empty IDT (limit 0) the `ud2` raises #UD, delivering it faults (#GP for a
// vector beyond the IDT limit), delivering that faults again (double fault -> #GP),
// and the CPU shuts down: a triple fault. QEMU resets (exits with -no-reboot);
// Visor reports the shutdown.

func guestMain() {
    putLine("about to triple fault")
    Console.flush()
    gk_lidt(0, 0)
    gk_ud2()
    // Not reached on a correct CPU or hypervisor.
    putLine("still alive after the triple fault")
    GuestKit.exit(2)
}
