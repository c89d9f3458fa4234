// `visor guests`: the built-in guests and where their ELF images are.

import ArgumentParser
import Visor

struct GuestsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guests",
        abstract: "List the built-in guests with the paths of their ELF images (building them if needed).",
        discussion: "Fetched guests (Debian's Linux) are listed with their kernel, or with the script that fetches them.")

    func run() throws {
        do {
            let catalog = GuestCatalog.standard()
            for (name, path) in try catalog.buildAll() {
                print("\(name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(path.path)")
            }
            for guest in GuestCatalog.fetchedGuests {
                let place = (try? catalog.fetchedGuest(named: guest.name))?.map { $0.kernel.path }
                    ?? "not fetched: run \(guest.fetchScript)"
                print("\(guest.name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(place)  (\(guest.about))")
            }
        } catch let error as GuestCatalogError {
            Launcher.printError("\(error)")
            if case .notFound = error { throw ExitCode(ExitStatus.unavailable) }
            throw ExitCode(ExitStatus.internalFailure)
        } catch {
            Launcher.printError("\(error)")
            throw ExitCode(ExitStatus.internalFailure)
        }
    }
}
