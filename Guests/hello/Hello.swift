// hello: one line on COM1, then power off (status 0). With `exit=N` on the command line it
// ends through the debug-exit port instead, so the host sees status (N << 1) | 1: the tests
// use this to check that a guest's chosen status reaches the shell, under Visor and QEMU alike.

func guestMain() {
    putLine("Hello from a Visor guest!")
    let requested = GuestKit.multiboot?.unsignedArgument("exit") ?? 0
    GuestKit.exit(UInt32(truncatingIfNeeded: requested))
}
