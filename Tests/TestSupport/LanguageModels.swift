/// Small language models for tests of decoding with an LM through the command line and the daemon.
public enum SampleLanguageModels {
    /// An LM that knows one of the tiny model's words, "down": with its closed vocabulary nothing else
    /// can come out, so its use shows in a transcript.
    public static let downOnlyARPA = """
    \\data\\
    ngram 1=4
    ngram 2=2

    \\1-grams:
    -99\t<s>\t-0.3
    -0.3\tdown\t-0.2
    -0.5\t</s>
    -2.0\t<unk>

    \\2-grams:
    -0.1\t<s> down
    -0.1\tdown </s>

    \\end\\
    """
}
