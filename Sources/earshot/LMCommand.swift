import ArgumentParser
import Decoding
import Foundation

struct LMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lm", abstract: "Compile and inspect word n-gram language models.", subcommands: [Compile.self, Info.self])

    struct Compile: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Convert an ARPA language model into Earshot's binary format, which loads in a fraction of the time and memory.",
            discussion: """
                --lm (and earshotd's lm setting) read either format; the binary one is the same model, \
                n-gram for n-gram and value for value, laid out as sorted arrays instead of text. For \
                pocketsphinx's general English trigram model (3.8 million n-grams) it loads about twenty \
                times faster than the ARPA text, in a third of the memory (docs/language-models.md). \
                The output is written atomically.

                Example (scripts/setup.sh does this):
                  earshot lm compile ~/.cache/earshot/lm/en-us.arpa \\
                    --out ~/.cache/earshot/lm/en-us.eslm
                """)

        @Argument(help: "The ARPA file to read.")
        var arpa: String

        @Option(help: "The binary model to write (by convention .eslm).")
        var out: String

        func validate() throws {
            guard !sameFile(arpa, out) else {
                throw ValidationError("--out \(out) is the input; write the binary model elsewhere")
            }
        }

        func run() throws {
            // Before parsing (half a minute for a large ARPA file), not at the end.
            try checkOutputFile("--out", out, example: "en-us.eslm")
            let started = Date()
            do {
                let lm = try NGramLanguageModel(file: URL(fileURLWithPath: arpa))
                try lm.writeBinary(to: URL(fileURLWithPath: out))
                let counts = (1...lm.order).map { String(lm.count(order: $0)) }.joined(separator: "/")
                print("compiled \(arpa) (order \(lm.order), \(counts) n-grams) into \(out) in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
            } catch let error as LanguageModelError {
                throw CLIError(error.description)
            }
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a language model's format, order, n-gram counts, vocabulary size and load time.")

        @Argument(help: "A language model file (ARPA or binary).")
        var path: String

        func run() throws {
            guard FileManager.default.fileExists(atPath: path) else { throw CLIError("cannot read language model \(path): no such file") }
            let started = Date()
            do {
                let bytes = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
                let lm = try NGramLanguageModel(file: URL(fileURLWithPath: path))
                let seconds = Date().timeIntervalSince(started)
                let format = NGramLanguageModel.isBinaryFile(URL(fileURLWithPath: path)) ? "binary (earshot lm compile)" : "ARPA text"
                print("file:       \(path) (\(bytes) bytes)")
                print("format:     \(format)")
                print("order:      \(lm.order)")
                for n in 1...lm.order { print("\(n)-grams:    \(lm.count(order: n))") }
                let special: Set<String> = [NGramLanguageModel.sentenceStart, NGramLanguageModel.sentenceEnd, NGramLanguageModel.unknown]
                let markers = lm.words.filter { special.contains($0) }.sorted()
                print("words:      \(lm.words.filter { !special.contains($0) }.count)\(markers.isEmpty ? "" : " (plus \(markers.joined(separator: " ")))")")
                print("loaded in:  \(String(format: "%.2f", seconds)) s")
            } catch let error as LanguageModelError {
                throw CLIError(error.description)
            } catch {
                throw CLIError("cannot read language model \(path): \(reason(of: error))")
            }
        }
    }
}
