// The engine the `interpreter` target runs its inputs on.

import VisorCore
import VisorX86

let fuzzedEngine: any Engine = InterpEngine()
