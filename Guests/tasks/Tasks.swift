// tasks: checks hardware task switching in 32-bit protected mode (issue 15 item 6; Intel SDM
// Vol. 3A ch. 8). tasks.S leaves long mode, runs far JMP and CALL to TSSes and task gates, INT n
// and a double fault through task gates in the IDT, IRET with NT, and the faults for a busy TSS
// and a TSS limit below 67h, writing what it sees into tasks_obs[]; back in long mode this file
// judges the observations and prints PASS/FAIL per check.
// Exit: 0 when every check passed, else 1 (status 3).

nonisolated(unsafe) var failures = 0

// Selectors and bits tasks.S uses.
let tssA: UInt32 = 0x28, tssB: UInt32 = 0x30, tssC: UInt32 = 0x38, tssD: UInt32 = 0x48
let tssSmall: UInt32 = 0x58, ldtB: UInt32 = 0x60, gateC: UInt32 = 0x40
let busyType: UInt32 = 0x8b, availableType: UInt32 = 0x89
let flagNT: UInt32 = 1 << 14, cr0TS: UInt32 = 1 << 3

func obs(_ slot: Int32) -> UInt32 { tasks_observed(slot) }

func check(_ name: StaticString, _ ok: Bool, _ detail: () -> Void = {}) {
    put(ok ? "PASS " : "FAIL ")
    put(name)
    if !ok {
        put(": ")
        detail()
        failures += 1
    }
    putLine()
}

/// A check that observed slots hold wanted values; the detail names every slot that differs.
func expect(_ name: StaticString, _ pairs: [(slot: Int32, wanted: UInt32)]) {
    let wrong = pairs.filter { obs($0.slot) != $0.wanted }
    check(name, wrong.isEmpty) {
        for (i, p) in wrong.enumerated() {
            if i > 0 { put(", ") }
            put("slot "); put(p.slot); put(" = "); putHex(UInt64(obs(p.slot)), digits: 4)
            put(" (wanted "); putHex(UInt64(p.wanted), digits: 4); put(")")
        }
    }
}

func guestMain() {
    putLine("tasks: hardware task switching in 32-bit protected mode")
    Console.flush()
    tasks_run32()
    check("left long mode for 32-bit protected mode and came back", obs(0) == 1)
    expect("far JMP to a TSS: the new task runs with TR, EAX and LDTR from its TSS, NT clear", [
        (1, tssA), (2, tssB), (3, 0xb0b0_b0b0), (5, ldtB),
    ])
    check("far JMP to a TSS: EFLAGS.NT clear in the new task", obs(4) & flagNT == 0) { putHex(UInt64(obs(4)), digits: 8) }
    expect("far JMP back: the old task's busy bit is cleared, the new task's set", [(6, busyType), (7, availableType)])
    check("a task switch sets CR0.TS", obs(8) & cr0TS != 0) { putHex(UInt64(obs(8)), digits: 8) }
    expect("far JMP saves the EIP after the JMP in the old TSS", [(9, tasks_b_resume_address())])
    expect("far CALL through a task gate: TR, both tasks busy while nested", [(10, tssC), (12, busyType), (13, busyType)])
    check("far CALL through a task gate sets EFLAGS.NT in the called task", obs(11) & flagNT != 0) {
        putHex(UInt64(obs(11)), digits: 8)
    }
    expect("far CALL writes the caller's TSS selector into the link field", [(18, tssA)])
    expect("IRET with NT returns to the caller and frees the called task", [(14, 1), (15, busyType), (16, availableType)])
    check("IRET with NT saves the returning task's EFLAGS with NT clear", obs(17) & flagNT == 0) {
        putHex(UInt64(obs(17)), digits: 8)
    }
    check("the caller resumes with its own EFLAGS (NT clear)", obs(19) & flagNT == 0) { putHex(UInt64(obs(19)), digits: 8) }
    expect("far JMP to a busy TSS raises #GP(selector)", [(20, 13), (21, tssA)])
    expect("far JMP to a TSS with a limit below 67h raises #TS(selector) and leaves it available",
           [(22, 10), (23, tssSmall), (24, availableType)])
    expect("INT n through a task gate: TR and link; IRET back restores the interrupted task",
           [(25, tssD), (27, tssA), (28, 0x4040), (29, 0x4040), (30, availableType)])
    check("INT n through a task gate sets EFLAGS.NT", obs(26) & flagNT != 0) { putHex(UInt64(obs(26)), digits: 8) }
    expect("#DF through a task gate: error code 0 on the new task's stack, link, the faulting EIP saved",
           [(31, 0), (32, tssA), (33, tasks_df_instruction_address()), (35, 0), (36, 1)])
    check("no unexpected fault in 32-bit protected mode", obs(47) == 0) { put("vector "); put(obs(47)) }
    if failures == 0 {
        putLine("tasks: all checks passed")
        GuestKit.exit(0)
    }
    put("tasks: "); put(failures); putLine(" check(s) failed")
    GuestKit.exit(1)
}
