// The engine the `bt` target runs the `interpreter` target's inputs on (FuzzInterpreter.swift,
// a symlink): binary translation, with a small code cache so that inputs exercise its reset.

import VisorBT
import VisorCore

let fuzzedEngine: any Engine = BTEngine(cacheBytes: 64 << 10)
