import Foundation
import Testing
import TestSupport

/// `earshot lm compile`/`info`, and the general LM `earshot transcribe` decodes with by default.
extension CLITests {
    @Test func transcribeDecodesWithTheGeneralLMUnlessToldNot() throws {
        try withFixture { f in
            let arpa = f.dir.appendingPathComponent("down.arpa"), binary = f.dir.appendingPathComponent("down.eslm")
            try Data(SampleLanguageModels.downOnlyARPA.utf8).write(to: arpa)
            // An --out that names a folder, or a folder that does not exist, is refused before parsing.
            for out in [f.dir.appendingPathComponent("newdir").path + "/", f.dir.path, f.dir.appendingPathComponent("no/such.eslm").path] {
                let refused = try f.run(["lm", "compile", arpa.path, "--out", out])
                #expect(refused.status == 1 && refused.stderr.hasPrefix("earshot: --out ") && !refused.stderr.contains(".tmp-"), "\(out): \(refused.stderr)")
            }
            #expect(!FileManager.default.fileExists(atPath: f.dir.appendingPathComponent("newdir").path))
            let compiled = try f.run(["lm", "compile", arpa.path, "--out", binary.path])
            #expect(compiled.status == 0, "\(compiled.stderr)")
            #expect(compiled.stdout.contains("order 2, 4/2 n-grams"), "\(compiled.stdout)")
            let info = try f.run(["lm", "info", binary.path])
            #expect(info.status == 0 && info.stdout.contains("binary") && info.stdout.contains("2-grams:    2"), "\(info.stdout)\(info.stderr)")

            let audio = try f.speak(["yes"])[0]
            let greedy = try f.expected(audio).transcript.text
            #expect(greedy == "yes", "the tiny model should hear its own word")
            let general = ["EARSHOT_LM": binary.path]
            func transcript(_ args: [String], _ environment: [String: String]) throws -> String {
                let r = try f.run(["transcribe", "--model", f.model.path] + args + [audio.path], environment: environment)
                #expect(r.status == 0, "\(args) \(environment): \(r.stderr)")
                return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            // Default: the general LM, closed vocabulary: only "down" can be said.
            let withLM = try transcript([], general)
            // (Nothing at all is what it makes of "yes": spelling "down" costs more than the search keeps.)
            #expect(withLM != greedy && withLM.split(separator: " ").allSatisfy { $0 == "down" }, "'\(withLM)'")
            // And a word it knows comes out through it.
            let down = try f.speak(["down"])[0]
            let r = try f.run(["transcribe", "--model", f.model.path, down.path], environment: general)
            #expect(r.status == 0 && r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "down", "\(r.stdout)\(r.stderr)")
            #expect(try transcript([], ["EARSHOT_LM": arpa.path]) == withLM, "ARPA and binary decode alike")
            // Each way of turning it off gives the greedy transcript.
            #expect(try transcript(["--no-general-lm"], general) == greedy)
            #expect(try transcript(["--beam", "1"], general) == greedy)
            #expect(try transcript(["--no-model-lm"], general) == greedy)
            #expect(try transcript([], ["EARSHOT_LM": ""]) == greedy)
            // An open vocabulary lets the acoustics through again; --lm replaces the general LM.
            #expect(try transcript(["--open-vocabulary"], general) == "yes")
            let other = f.dir.appendingPathComponent("yes.arpa")
            try Data(SampleLanguageModels.downOnlyARPA.replacingOccurrences(of: "down", with: "yes").utf8).write(to: other)
            #expect(try transcript(["--lm", other.path, "--closed-vocabulary"], general) == "yes")
            // eval measures what it is told: no general LM by default.
            let manifest = f.dir.appendingPathComponent("one.tsv")
            try writeManifest([(audio, "yes")], to: manifest)
            let eval = try f.run(["eval", "--model", f.model.path, manifest.path], environment: general)
            #expect(eval.status == 0 && eval.stdout.contains("WER:        0.00%"), "\(eval.stdout)\(eval.stderr)")

            // A configured LM that cannot be read is a one-line failure naming it and where it came from.
            let broken = f.dir.appendingPathComponent("broken.eslm")
            try Data(Array(try Data(contentsOf: binary)).dropLast(5)).write(to: broken)
            expectOneLineFailure(try f.run(["transcribe", "--model", f.model.path, audio.path], environment: ["EARSHOT_LM": broken.path]),
                                 "a damaged general LM", mentions: [broken.path, "EARSHOT_LM", "damaged"])
            expectOneLineFailure(try f.run(["lm", "compile", arpa.path, "--out", f.dir.appendingPathComponent("no/such/dir.eslm").path]),
                                 "compile into a missing folder", mentions: ["no/such/dir.eslm"])
            expectOneLineFailure(try f.run(["lm", "info", broken.path]), "info on a damaged file", mentions: [broken.path])
        }
    }
}
