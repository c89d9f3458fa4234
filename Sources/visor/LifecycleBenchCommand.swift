// `visor bench lifecycle`: create-to-first-byte, destroy and API round trip through the toolstack.

import ArgumentParser
import Foundation
import Visor
import VisorBench

struct LifecycleBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lifecycle",
        abstract: "Domain lifecycle through the toolstack API: create to first console byte, destroy, request round trip.",
        discussion: """
            A daemon runs in this process on a temporary socket and is driven over it, as `visor create` \
            and `visor destroy` do. Also reports this process's RSS and thread count before and after the \
            domains (a destroyed domain returns both) and with several domains live, beside Firecracker's \
            specification and issue #14's goals.
            """)

    @Option(parsing: .unconditional, help: "Domains created and destroyed one after the other, 1-10000.")
    var domains: String = "100"

    @Option(parsing: .unconditional, help: "The engine: kvm, interp or bt.")
    var engine: String = "interp"

    @Option(parsing: .unconditional, help: "The built-in guest each domain runs (it must write to its console).")
    var guest: String = "minios"

    func values() throws -> (domains: Int, engine: String) {
        (try OptionValue.wholeNumber(domains, option: "--domains", in: 1...10_000, allowed: "give 1 to 10000 domains"),
         try OptionValue.engine(engine))
    }

    func validate() throws { _ = try values() }

    func run() throws {
        let (count, engine) = try values()
        do {
            print(try LifecycleBenchmark.run(domains: count, engine: engine, guest: guest).report)
        } catch {
            Launcher.printError("\(error)")
            throw ExitCode(ExitStatus.internalFailure)
        }
    }
}
