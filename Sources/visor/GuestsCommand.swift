// `visor guests`: the built-in guests and where their ELF images are.

import ArgumentParser
import Visor

struct GuestsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guests",
        abstract: "List the built-in guests with the paths of their ELF images (building them if needed).")

    func run() throws {
        do {
            for (name, path) in try GuestCatalog.standard().buildAll() {
                print("\(name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(path.path)")
            }
        } catch {
            Launcher.printError("\(error)")
            throw ExitCode(ExitStatus.internalFailure)
        }
    }
}
