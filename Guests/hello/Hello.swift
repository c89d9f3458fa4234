// hello: one line on COM1, then power off (status 0).

func guestMain() {
    putLine("Hello from a Visor guest!")
    GuestKit.exit(0)
}
