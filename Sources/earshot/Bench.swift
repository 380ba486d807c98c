import ArgumentParser
import Audio
import Foundation
import Recognizer
import Scoring

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure recognition speed per stage and peak memory on one core.",
        discussion: """
        Reads the audio first (decoding and resampling are timed as their own stage), then \
        recognises every file on ONE thread with one BLAS thread, and prints for each stage \
        (audio decoding, frontend, encoder, decoder) and end to end: the real-time factor (CPU \
        seconds per audio second) and its inverse, audio seconds per CPU second. CPU time is the \
        thread's own, so other load on the machine inflates it less than wall time. Peak RSS is \
        the process's high-water mark.

        By default each file is recognised in one pass with the model's own decoding (greedy, or \
        its domain LM): the model's speed. --as-transcribe times what `earshot transcribe` does by \
        default instead: the general English LM when one is installed (beam search), each file \
        split at its pauses, a quiet recording levelled.
        """)

    @OptionGroup var recognition: RecognitionOptions

    @Option(name: .customLong("audio"), help: "Audio files, folders of them, or manifests (.tsv). Repeatable.")
    var inputs: [String]

    @Option(help: "Repeat the whole set this many times (longer runs give steadier figures).")
    var repeats: Int = 1

    @Flag(help: "Time earshot transcribe's default pipeline (general LM, split at pauses, levelling) rather than one greedy pass per file.")
    var asTranscribe = false

    func run() throws {
        guard repeats >= 1 else { throw CLIError("--repeats \(repeats): must be at least 1") }
        let paths = try Self.expand(inputs)
        guard !paths.isEmpty else {
            throw CLIError("no audio files found in \(inputs.joined(separator: ", ")) (a folder's own files are read, not its subfolders'; a manifest .tsv lists any)")
        }
        let (recognizer, modelPath) = try recognition.makeRecognizer(generalLM: asTranscribe ? GeneralLanguageModel.locate() : nil)

        var decodeCPU = 0.0
        var clips: [[Float]] = []
        for path in paths {
            let t0 = threadCPUTime()
            do { clips.append(try AudioFile.read(path: path, targetSampleRate: recognizer.sampleRate).samples) } catch {
                throw CLIError("\(error)")
            }
            decodeCPU += threadCPUTime() - t0
        }
        var timings = StageTimings()
        let wall0 = Date()
        for _ in 0..<repeats {
            for clip in clips {
                if asTranscribe {
                    let gain = RecordingLevel(samples: clip, sampleRate: recognizer.sampleRate).gainDB
                    timings += recognizer.transcribe(clip, splitAtPauses: true, gainDB: gain).timings
                } else {
                    timings += recognizer.recognize(clip).timings
                }
            }
        }
        let wall = Date().timeIntervalSince(wall0)
        let audio = timings.audioSeconds
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)

        print("model:       \(modelPath) (\(recognizer.model.parameterCount) parameters)")
        print("decoding:    \(Self.describe(recognizer.options))" + (asTranscribe ? ", split at pauses, levelled (as earshot transcribe)" : ""))
        print(String(format: "audio:       %d files, %.1f s x %d", clips.count, audio / Double(repeats), repeats))
        print("stage         RTF (cpu s / audio s)     speed (audio s / cpu s)")
        func row(_ name: String, _ cpu: Double, _ seconds: Double) {
            let rtf = cpu / seconds
            let label = name.padding(toLength: 14, withPad: " ", startingAt: 0)
            print(label + String(format: "%-24.5f  %.0fx real time", rtf, rtf > 0 ? 1 / rtf : .infinity))
        }
        row("read+resample", decodeCPU, audio / Double(repeats))
        row("frontend", timings.frontend, audio)
        row("encoder", timings.encoder, audio)
        row("decoder", timings.decoder, audio)
        row("recognition", timings.total, audio)
        row("end to end", timings.total + decodeCPU * Double(repeats), audio)
        print(String(format: "wall clock:  %.2f s for recognition (%.0fx real time)", wall, audio / wall))
        // The clips are decoded up front so that decoding is timed apart from recognition; their samples
        // are the bench's own, not what recognising one stream needs.
        let clipMiB = Double(clips.reduce(0) { $0 + $1.count } * MemoryLayout<Float>.size) / 1_048_576
        print(String(format: "peak RSS:    %.1f MiB, of which %.1f MiB hold the decoded clips (the bench's own, read up front)",
                     Double(usage.ru_maxrss) / 1024, clipMiB))
    }

    /// What the recogniser really does (hotwords alone switch to beam search, so the flags do not say).
    static func describe(_ options: DecodingOptions) -> String {
        guard let beam = options.beam else { return "greedy" }
        var extras: [String] = []
        if options.languageModel != nil { extras.append("language model") }
        if let lexicon = beam.lexicon { extras.append("closed vocabulary of \(lexicon.words.count) words") }
        if !beam.hotwords.isEmpty { extras.append("\(beam.hotwords.count) hotword\(beam.hotwords.count == 1 ? "" : "s")") }
        return "beam search, width \(beam.beamWidth)" + (extras.isEmpty ? "" : " (" + extras.joined(separator: ", ") + ")")
    }

    static func expand(_ inputs: [String]) throws -> [String] {
        var out: [String] = []
        let fm = FileManager.default
        for input in inputs {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: input, isDirectory: &isDir) else { throw CLIError("'\(input)': no such file or folder") }
            if isDir.boolValue {
                let names: [String]
                do { names = try fm.contentsOfDirectory(atPath: input).sorted() } catch {
                    throw CLIError("'\(input)': cannot list the folder: \(reason(of: error))")
                }
                out += names.filter { AudioFileFormat(path: $0) != nil || $0.hasSuffix(".wav") }
                    .map { URL(fileURLWithPath: input).appendingPathComponent($0).path }
            } else if input.hasSuffix(".tsv") {
                do {
                    let m = try Manifest.read(from: URL(fileURLWithPath: input))
                    out += m.entries.map { m.url(of: $0).path }
                } catch { throw CLIError("\(error)") }
            } else {
                out.append(input)
            }
        }
        return out
    }
}
