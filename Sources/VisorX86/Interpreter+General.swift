// General-purpose instructions: arithmetic, logic, shifts, bits, moves, stack, control flow,
// strings, flags. (Being filled in family by family.)

import VisorX86Decode

extension X86Machine {
    /// Executes `insn` if it is a general-purpose instruction; false if it is not one.
    func executeGeneral(_ insn: DecodedInstruction) throws(X86Interruption) -> Bool {
        false
    }
}
