// Console input from the host to a guest: which of the guest's consoles takes a byte
// (`Domain.sendConsoleInput`).

import Foundation
import Testing
import VisorABI
@testable import Visor

@Suite("Console input", .serialized, .timeLimit(.minutes(5)))
struct ConsoleInputTests {
    /// A domain that is created but never run: input is offered to it as the host console does.
    private func idleDomain() throws -> Domain {
        let engine = try #require(EngineRegistry.engine(named: "interp"))
        let kernel = try [UInt8](Data(contentsOf: URL(fileURLWithPath: guestImage("hello"))))
        return try Domain(configuration: DomainConfiguration(name: "hello", kernelDescription: "hello",
                                                             kernel: kernel, engine: engine),
                          consoleOutput: { _ in })
    }

    @Test("a guest that reads its input through PV gets every byte once, however many: COM1's full FIFO refuses none")
    func pvGuestGetsEveryByteOnce() throws {
        let domain = try idleDomain()
        domain.platform.lock.withLock { domain.pv.bind(1, .virq(VIRQ.console, vcpu: 0)) }  // as bind_virq does
        let typed = (0..<100).map { UInt8(truncatingIfNeeded: 0x21 + $0 % 90) }
        let refused = typed.indices.filter { !domain.sendConsoleInput(typed[$0]) }
        #expect(refused.isEmpty, "bytes refused: \(refused)")
        let queued = domain.platform.lock.withLock { domain.pv.takeConsoleInput(4096) }
        #expect(queued == typed)
    }

    @Test("a guest that never asked for PV input gets it in COM1, and the PV queue stays empty")
    func nativeGuestGetsCOM1() throws {
        let domain = try idleDomain()
        #expect(domain.sendConsoleInput(0x41))
        #expect(domain.platform.lock.withLock { domain.pv.consoleInputCount } == 0)
        // The guest never turned COM1's FIFO on: its one-byte holding register is full.
        #expect(!domain.sendConsoleInput(0x42))
        #expect(domain.platform.lock.withLock { domain.pv.consoleInputCount } == 0)
    }
}
