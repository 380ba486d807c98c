import ArgumentParser
import Audio
import Foundation
import Tensors
import Recognizer
import Scoring
import Training

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Word and character error rates of a model on a test set.",
        discussion: """
        MANIFEST is a TSV file: audio path (relative to the manifest's folder), TAB, reference text; \
        '#' lines and blank lines are ignored. Texts are lowercased and punctuation other than \
        apostrophes inside words becomes a space before scoring ("state-of-the-art" is four words, \
        'yes' is yes). Digits are kept, and the model spells numbers in words: write them so. WER = (substitutions + deletions + insertions) / \
        reference words over the whole set, aligned as NIST sclite aligns them (the test suite \
        checks the two agree). --hyps writes the hypotheses in the same two-column form.

        --score HYPS scores hypotheses that another run or another recogniser wrote (the same \
        two-column form, paired with the references by audio path), without a model. --trn DIR \
        writes DIR/ref.trn and DIR/hyp.trn, both normalised as above, for NIST sclite: \
        `sclite -r DIR/ref.trn trn -h DIR/hyp.trn trn -i spu_id`.

        Each file is decoded as one utterance; --split-at-pauses splits it at its pauses first, as \
        `earshot transcribe` and earshotd do (docs/endpointing.md).
        """)

    @Argument(help: "Manifest: audio-path<TAB>reference text per line.")
    var manifest: String

    @OptionGroup var recognition: RecognitionOptions

    @Option(help: "Write hypotheses here (audio-path<TAB>text, same order as the manifest).")
    var hyps: String?

    @Option(help: ArgumentHelp("Score these hypotheses (audio-path<TAB>text) instead of running a model.", valueName: "file"))
    var score: String?

    @Option(help: ArgumentHelp("Write ref.trn and hyp.trn (normalised) into this folder, for sclite.", valueName: "dir"))
    var trn: String?

    @Option(help: "Files recognised in parallel (one per core by default).")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    @Flag(help: "Split each file into utterances at its pauses and decode them one by one, as transcribe does.")
    var splitAtPauses = false

    @Flag(help: "Do not raise a quiet recording's level before recognition (transcribe raises one whose loudest 20 ms is below \(Int(RecordingLevel.quietBelow)) dBFS, as this does by default).")
    var keepLevel = false

    func run() throws {
        guard jobs >= 1 else { throw CLIError("--jobs \(jobs): must be at least 1") }
        let list: Manifest
        do { list = try Manifest.read(from: URL(fileURLWithPath: manifest)) } catch { throw CLIError("\(error)") }
        guard !list.entries.isEmpty else { throw CLIError("\(manifest): no utterances in the manifest") }
        if let trn {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: trn, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CLIError("--trn \(trn): no such folder")
            }
        }
        if let score {
            guard hyps == nil else { throw CLIError("--score reads hypotheses and --hyps writes them: give one") }
            try scoreGiven(score, list)
            return
        }
        if let hyps {
            // Checked before the recognition it would otherwise throw away.
            let folder = URL(fileURLWithPath: hyps).deletingLastPathComponent().path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CLIError("--hyps \(hyps): the folder \(folder) does not exist")
            }
            if FileManager.default.fileExists(atPath: hyps, isDirectory: &isDirectory), isDirectory.boolValue {
                throw CLIError("--hyps \(hyps) is a folder; give a file name in it")
            }
            // The references would be replaced by the hypotheses (and the next run score 0 %).
            if sameFile(hyps, manifest) {
                throw CLIError("--hyps \(hyps) is the manifest being scored; give another file name")
            }
        }
        let (recognizer, modelPath) = try recognition.makeRecognizer()
        let results = Locked<[(hypothesis: String, audioSeconds: Double, cpu: Double)?]>(slots: list.entries.count)
        let progress = ProgressReporter(total: list.entries.count, label: "evaluating")
        let failures = Locked<[String?]>(slots: list.entries.count)
        let splitAtPauses = splitAtPauses
        let keepLevel = keepLevel
        forEachConcurrently(list.entries.count, jobs: jobs) { i in
            let entry = list.entries[i]
            let path = list.url(of: entry).path
            do {
                let audio = try AudioFile.read(path: path, targetSampleRate: recognizer.sampleRate)
                let gain = keepLevel ? 0 : RecordingLevel(samples: audio.samples, sampleRate: recognizer.sampleRate).gainDB
                let (t, timings) = recognizer.transcribe(audio.samples, splitAtPauses: splitAtPauses, gainDB: gain)
                results.set(i, (t.text, audio.duration, timings.total))
            } catch {
                failures.set(i, "\(error)")
                results.set(i, ("", 0, 0))
            }
            progress.advance(entry.path)
        }
        progress.finish()
        let failed = failures.current.compactMap { $0 }
        for f in failed { writeErrRaw("earshot: \(f) (scored as an empty hypothesis)\n") }

        let all = results.current.map { $0! }
        let audio = all.reduce(0) { $0 + $1.audioSeconds }, cpu = all.reduce(0) { $0 + $1.cpu }
        print("model:      \(modelPath)")
        try report(list, hypotheses: all.map(\.hypothesis), minutes: audio / 60)
        if cpu > 0 { print(String(format: "speed:      %.0fx real time per core (recognition only)", audio / cpu)) }
        if let hyps {
            let out = Manifest(entries: zip(list.entries, all).map { .init(path: $0.path, text: $1.hypothesis) },
                               baseDirectory: list.baseDirectory)
            do { try out.write(to: URL(fileURLWithPath: hyps)) } catch { throw CLIError("--hyps \(hyps): \(error)") }
        }
        if !failed.isEmpty { throw CLIError("\(failed.count) of \(list.entries.count) audio files could not be read") }
    }

    /// Prints the error rates of `hypotheses` (in manifest order) and writes the trn files when asked.
    func report(_ list: Manifest, hypotheses: [String], minutes: Double?) throws {
        let score = CorpusScore(pairs: zip(list.entries, hypotheses).map { ($0.text, $1) })
        print("utterances: \(score.utterances)" + (minutes.map { " (\(String(format: "%.1f", $0)) min of audio)" } ?? ""))
        // A rate over no reference words is undefined; say so rather than print "inf%".
        func rate(_ percent: Double, _ length: Int) -> String { length > 0 ? String(format: "%.2f%%", percent) : "n/a (no reference words)" }
        let w = score.words, c = score.characters
        print("WER:        \(rate(score.wordErrorRatePercent, w.referenceLength))  (\(w.substitutions) sub, \(w.deletions) del, \(w.insertions) ins / \(counted(w.referenceLength, "word")))")
        print("CER:        \(rate(score.characterErrorRatePercent, c.referenceLength))  (\(c.substitutions) sub, \(c.deletions) del, \(c.insertions) ins / \(counted(c.referenceLength, "character")))")
        print(String(format: "SER:        %.2f%%  ", 100 * Double(score.utterancesWithErrors) / Double(max(1, score.utterances)))
              + "(\(score.utterancesWithErrors) of \(counted(score.utterances, "utterance")) with a word error)")
        if let trn {
            let folder = URL(fileURLWithPath: trn)
            do {
                try SCLiteExport.write(references: list.entries.map(\.text), hypotheses: hypotheses,
                                       referenceURL: folder.appendingPathComponent("ref.trn"),
                                       hypothesisURL: folder.appendingPathComponent("hyp.trn"))
            } catch { throw CLIError("--trn \(trn): \(error)") }
        }
    }

    /// --score: the hypotheses of FILE paired with the manifest's references by audio path (as written,
    /// or as the same file); a reference without a hypothesis scores as an empty one, and is named.
    func scoreGiven(_ file: String, _ list: Manifest) throws {
        let given: Manifest
        do { given = try Manifest.read(from: URL(fileURLWithPath: file)) } catch { throw CLIError("--score \(error)") }
        var byPath: [String: String] = [:]
        var resolved = Set<String>()
        for entry in given.entries {
            // The same file twice, however written (a.wav, ./a.wav, /abs/a.wav), is refused.
            let path = given.url(of: entry).standardizedFileURL.path
            guard resolved.insert(path).inserted else { throw CLIError("--score \(file): \(entry.path) has two hypotheses") }
            byPath[entry.path] = entry.text
            byPath[path] = entry.text
        }
        var missing: [String] = []
        let hypotheses = list.entries.map { entry -> String in
            if let text = byPath[entry.path] ?? byPath[list.url(of: entry).standardizedFileURL.path] { return text }
            missing.append(entry.path)
            return ""
        }
        print("hypotheses: \(file)")
        try report(list, hypotheses: hypotheses, minutes: nil)
        if !missing.isEmpty {
            throw CLIError("--score \(file): no hypothesis for \(counted(missing.count, "of the manifest's files", plural: "of the manifest's files")) (first: \(missing[0])), scored as empty")
        }
    }
}
