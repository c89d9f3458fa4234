// System instructions: control and model-specific registers, descriptor tables, I/O, CPUID,
// interrupts and returns from them, SYSCALL/SYSRET. (Being filled in.)

import VisorX86Decode

extension X86Machine {
    /// Executes `insn` if it is a system instruction; false if it is not one.
    func executeSystem(_ insn: DecodedInstruction) throws(X86Interruption) -> Bool {
        false
    }
}
