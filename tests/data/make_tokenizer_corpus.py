#!/usr/bin/env python3
"""Write tests/data/tokenizer_corpus.txt: the tokenizer parity corpus.

One input per line, as bytes.  Inside a line, the two-character escapes
\\n, \\r and \\\\ stand for newline, carriage return and backslash (so inputs
may contain them); every other byte stands for itself, including bytes that
are not valid UTF-8 (the "invalid UTF-8" section).  Deterministic: the same
script writes the same file.

Sections: English prose, code in several languages, 20+ scripts, emoji
(ZWJ sequences, skin tones, flags, keycaps), combining marks, numbers of
every length, whitespace runs (tabs, CRLF, NBSP, U+3000, ...), special tokens
written inside text, very long words, empty lines, invalid UTF-8, and random
mixtures of all of these.
"""
import os
import random

R = random.Random(20261123)

PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times.",
    "In 1969, Neil Armstrong became the first person to walk on the Moon.",
    "She sells seashells by the seashore; the shells she sells are surely seashells.",
    "Don't count your chickens before they hatch — it's an old saying, isn't it?",
    "The mitochondria is the powerhouse of the cell.",
    "\"Hello,\" he said, \"how are you doing today?\"",
    "We'll meet at 3:30 p.m. on Tuesday, the 14th of March.",
    "Transformers process tokens in parallel, unlike recurrent networks.",
    "The committee's decision — announced late on Friday — surprised everyone.",
    "E-mail me at someone@example.com or visit https://example.org/path?q=1&r=2.",
    "Prices rose 3.5% year-over-year, while wages grew only 2.1%.",
    "I can't believe it's not butter!",
    "Mr. and Mrs. Smith arrived at 10 o'clock sharp.",
    "Rock 'n' roll isn't dead; it's just resting.",
    "The U.S.A. and the U.K. signed the agreement in Geneva.",
    "To be, or not to be: that is the question.",
    "All work and no play makes Jack a dull boy.",
    "A journey of a thousand miles begins with a single step.",
    "Supercalifragilisticexpialidocious is a very long word.",
    "HELLO WORLD IN CAPITAL LETTERS, and MiXeD CaSe WoRdS.",
    "naïve café résumé coöperate façade jalapeño",
    "The temperature dropped to -40°, which is the same in Fahrenheit and Celsius.",
    "Section 2(b)(iii) of the Act applies [see note 7].",
    "Ellipses... and more ellipses…",
    "Tokenization is the first step of every language model pipeline.",
    "What's the weather like in São Paulo?",
    "Their dog's bone, the dogs' bones, and its bone.",
    "Version 2.0.1-beta was released on 2024-05-17T08:30:00Z.",
    "Call +1 (555) 123-4567 or 555.987.6543 before 5pm.",
    "The ratio was 16:9, not 4:3; resolution 1920x1080.",
    "#hashtag @mention $TICKER ~tilde ^caret |pipe|",
    "He scored 100/100 & she scored 99/100.",
    "Quantum entanglement: spooky action at a distance.",
    "OK, so here's the thing - I really, really, REALLY like pizza.",
    "the end",
]

CODE = [
    "int main(void) {\\n    printf(\"hello, world\\\\n\");\\n    return 0;\\n}",
    "def fib(n):\\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "const add = (a, b) => a + b;\\nconsole.log(add(2, 3));",
    "fn main() {\\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\\n    println!(\"{:?}\", v);\\n}",
    "package main\\n\\nimport \"fmt\"\\n\\nfunc main() { fmt.Println(\"hi\") }",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "<div class=\"container\"><p>Hello &amp; welcome</p></div>",
    "#!/bin/bash\\nset -euo pipefail\\nfor f in *.txt; do wc -l \"$f\"; done",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "x = [i**2 for i in range(10) if i % 2 == 0]",
    "class Foo:\\n    def __init__(self, x):\\n        self.x = x\\n\\n    def __repr__(self):\\n        return f\"Foo({self.x!r})\"",
    "#include <stdio.h>\\n#define MAX(a, b) ((a) > (b) ? (a) : (b))",
    "public static void main(String[] args) throws IOException {",
    "template <typename T> T max(T a, T b) { return a > b ? a : b; }",
    "if err != nil {\\n\\treturn nil, fmt.Errorf(\"open %s: %w\", path, err)\\n}",
    "matrix = np.zeros((3, 4), dtype=np.float32)\\nmatrix[1:, ::2] += 1.5",
    "$ git commit -m \"Fix off-by-one in the parser\" && git push origin main",
    "regex = r\"^\\\\s*(\\\\d+)\\\\.(\\\\d+)\\\\s*$\"",
    "\\tindented with a tab\\n\\t\\tand two tabs",
    "    four spaces\\n        eight spaces\\n            twelve spaces",
    "a=1;b=2;c=a+b;d=c*c;e=d/2;f=e%3;g=f<<1;h=g>>1;i=h^0xFF;j=~i",
    "lambda x: x if x else None  # comment with trailing spaces   ",
    "<?php echo htmlspecialchars($_GET['q'] ?? '', ENT_QUOTES); ?>",
    "let x: Option<&str> = None; match x { Some(s) => s.len(), None => 0 };",
    "std::vector<std::pair<int, std::string>> v{{1, \"one\"}, {2, \"two\"}};",
    "// TODO(user): remove this hack before release\\n/* block\\n   comment */",
    "async function fetchData(url) {\\n  const res = await fetch(url);\\n  return res.json();\\n}",
    "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL DEFAULT '');",
    "\\\\begin{equation} E = mc^2 \\\\end{equation}",
    "0x7fffffff 0b101010 0o755 1e-9 6.02e23 3.14159f 42u 7ULL",
    "--verbose --output=/tmp/out.json -j8 -Wall -Wextra -O2",
]

SCRIPTS = {
    "chinese": ["我们今天去公园散步吧。", "机器学习是人工智能的一个分支。", "北京是中华人民共和国的首都。", "这本书非常有意思，我推荐你读一读。"],
    "japanese": ["今日はいい天気ですね。", "東京タワーは高いです。", "カタカナとひらがなと漢字を混ぜて書きます。", "ありがとうございました！"],
    "korean": ["안녕하세요, 만나서 반갑습니다.", "한국어는 한글로 씁니다.", "서울은 대한민국의 수도입니다."],
    "arabic": ["مرحبا بالعالم", "اللغة العربية جميلة جداً.", "القاهرة هي عاصمة مصر.", "كيف حالك اليوم؟"],
    "hebrew": ["שלום עולם", "ירושלים היא עיר עתיקה.", "אני אוהב ללמוד שפות חדשות."],
    "devanagari": ["नमस्ते दुनिया", "भारत एक विशाल देश है।", "मुझे हिंदी पढ़ना पसंद है।", "संस्कृत एक प्राचीन भाषा है।"],
    "bengali": ["আমি বাংলায় গান গাই।", "ঢাকা বাংলাদেশের রাজধানী।"],
    "tamil": ["வணக்கம் உலகம்", "தமிழ் ஒரு பழமையான மொழி."],
    "telugu": ["తెలుగు భాష చాలా అందమైనది."],
    "thai": ["สวัสดีครับ", "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ", "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย"],
    "cyrillic": ["Привет, мир!", "Москва — столица России.", "Я люблю читать книги по вечерам.", "Україна має багату історію.", "Здравейте, как сте?"],
    "greek": ["Γειά σου Κόσμε!", "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.", "ΑΛΦΑ ΒΗΤΑ γάμμα δέλτα"],
    "armenian": ["Բարեւ աշխարհ", "Հայաստանը գեղեցիկ երկիր է։"],
    "georgian": ["გამარჯობა მსოფლიო", "თბილისი საქართველოს დედაქალაქია."],
    "ethiopic": ["ሰላም ለዓለም", "አዲስ አበባ የኢትዮጵያ ዋና ከተማ ናት።"],
    "khmer": ["សួស្តី​ពិភពលោក", "ភ្នំពេញជារាជធានីនៃកម្ពុជា"],
    "lao": ["ສະບາຍດີ", "ວຽງຈັນແມ່ນນະຄອນຫຼວງຂອງລາວ"],
    "myanmar": ["မင်္ဂလာပါ", "ရန်ကုန်မြို့"],
    "tibetan": ["བཀྲ་ཤིས་བདེ་ལེགས།"],
    "sinhala": ["ආයුබෝවන්", "ශ්‍රී ලංකාව"],
    "vietnamese": ["Xin chào thế giới!", "Tiếng Việt có nhiều dấu thanh điệu.", "Hà Nội là thủ đô của Việt Nam."],
    "turkish": ["İstanbul'da yaşıyorum; ıhlamur, şeker, güzel, öğrenci.", "IĞDIR ŞEHRİ ÇOK GÜZEL"],
    "polish": ["Zażółć gęślą jaźń.", "Łódź jest dużym miastem w Polsce."],
    "german": ["Größenwahn, Straße, Übermäßig, Fußgängerübergänge.", "Donaudampfschifffahrtsgesellschaftskapitän"],
    "persian": ["سلام دنیا، حال شما چطور است؟"],
    "urdu": ["اردو ایک خوبصورت زبان ہے۔"],
    "gujarati": ["ગુજરાતી ભાષા"],
    "punjabi": ["ਪੰਜਾਬੀ ਭਾਸ਼ਾ"],
    "mongolian": ["Монгол Улс"],
    "cherokee": ["ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ"],
}

EMOJI = [
    "😀", "😂", "🥲", "❤️", "👍", "👍🏻", "👍🏼", "👍🏽", "👍🏾", "👍🏿", "👨‍👩‍👧‍👦", "👩‍💻",
    "🧑🏽‍🚀", "🏳️‍🌈", "🏴‍☠️", "🇺🇸", "🇯🇵", "🇩🇪", "🇧🇷", "1️⃣", "#️⃣", "*️⃣", "🤷‍♀️", "🙋🏾‍♂️",
    "👩🏻‍❤️‍💋‍👨🏼", "🐈‍⬛", "🐻‍❄️", "❤️‍🔥", "🫠", "🫶🏽", "©️", "™", "☺", "☺️", "🀄", "🎉🎉🎉",
    "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "👁️‍🗨️", "🧔‍♂️", "🤝🏻", "🫱🏼‍🫲🏿",
]

SPECIALS = [
    "[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "<s>", "</s>", "<unk>", "<pad>", "<bos>",
    "<eos>", "<mask>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>",
    "<|start_header_id|>", "<|end_header_id|>", "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>",
    "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>",
]

WS = [" ", "  ", "   ", "\\t", "\\t\\t", "\\n", "\\n\\n", "\\r\\n", "\\r\\n\\r\\n", "\\r",
      "\u00a0", "\u3000", "\u2009", "\u200b", "\u2028", "\u202f", " \\t \\n ", "\u00a0\u00a0",
      "\u1680", "\u2003", "\u205f", "\ufeff"]

COMBINING = [
    "e\u0301", "a\u0300\u0323", "n\u0303", "o\u0308\u0304", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349",
    "\u1e9b\u0323", "\u0915\u094d\u0937", "\u0e01\u0e34\u0e4a", "q\u0307\u0323", "\u00e9 vs e\u0301",
    "A\u030a\u212b\u00c5", "\ufb01\ufb02 ligatures \ufb00", "\u2460\u2461\u2462 \u2160\u2161\u2162",
    "\uff21\uff22\uff23 fullwidth \uff11\uff12\uff13", "\u1100\u1161\u11a8 jamo", "\u0644\u0627 \ufefb",
]

INVALID = [
    b"\x80", b"\xbf", b"\xc0\xaf", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xff", b"\xfe\xff",
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xc1\xbf",
    b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\x80\x80\x80", b"\xc3\x28", b"\xa0\xa1",
    b"\xe2\x28\xa1", b"\xe2\x82\x28", b"\xf0\x28\x8c\xbc", b"\xf0\x90\x28\xbc",
]


def esc(s):
    """Escape backslash, newline and CR for the one-line-per-input format."""
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def number(ndig):
    first = str(R.randint(1, 9)) if ndig > 1 else str(R.randint(0, 9))
    return first + "".join(str(R.randint(0, 9)) for _ in range(ndig - 1))


def random_text(n):
    pools = [" ".join(PROSE), "".join("".join(v) for v in SCRIPTS.values()), "".join(EMOJI),
             "0123456789", " \t\u00a0\u3000", "!?.,;:'\"()[]{}<>-_=+*/\\|&^%$#@~`"]
    out = []
    for _ in range(n):
        pool = R.choice(pools)
        start = R.randrange(len(pool))
        out.append(pool[start:start + R.randint(1, 12)])
    return "".join(out)


def lines():
    L = []
    # English prose: sentences, pairs, triples, case variants.
    for s in PROSE:
        L += [s, s.lower(), s.upper(), " " + s, s + " "]
    for _ in range(420):
        L.append(" ".join(R.sample(PROSE, R.randint(2, 4))))
    # Code (already escaped: its \n are the two-character escape).
    for c in CODE:
        L += [c, c.replace("    ", "\\t"), c + "\\n"]
    for _ in range(250):
        L.append("\\n".join(R.sample(CODE, R.randint(2, 3))))
    # Scripts: each sentence, pairs within a script, mixes across scripts.
    for name, ss in SCRIPTS.items():
        for s in ss:
            L += [esc(s), esc(s + " " + s), esc(" " + s)]
    allsc = [s for ss in SCRIPTS.values() for s in ss]
    for _ in range(500):
        L.append(esc(" ".join(R.sample(allsc, R.randint(2, 3)))))
    for _ in range(120):
        L.append(esc(R.choice(PROSE) + " " + R.choice(allsc)))
    # Emoji, alone, repeated, in text.
    for e in EMOJI:
        L += [e, e * 3, "I feel " + e + " today", e + e + " " + e]
    for _ in range(120):
        L.append(" ".join(R.choice(EMOJI) for _ in range(R.randint(1, 8))))
    # Combining marks.
    for c in COMBINING:
        L += [esc(c), esc(c + " " + c + c), esc("word" + c + "word")]
    for _ in range(60):
        base = R.choice("aeiouAEIOUnczs")
        L.append(esc(base + "".join(chr(R.randint(0x300, 0x36F)) for _ in range(R.randint(1, 12)))))
    # Numbers of every length, with separators, decimals, signs.
    for n in range(1, 61):
        L += [number(n), "x" + number(n) + "y", number(n) + " " + number(max(1, n // 2))]
    for _ in range(150):
        L.append(R.choice(["", "-", "+", "$", "€"]) + f"{R.randint(0, 10**R.randint(1, 12)):,}" +
                 R.choice(["", ".5", ".25", "%", "k", "e10", " USD"]))
    L += ["3.14159265358979323846264338327950288419716939937510", "1,000,000", "1.000.000,00",
          "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "一二三四五六七八九十", "½ ¾ ⅞ ² ³ ¹", "Ⅻ ⅻ"]
    # Whitespace runs.
    for w in WS:
        L += ["a" + w + "b", w + "lead", "trail" + w, w, w + w + w, "x" + w * 5 + "y"]
    for _ in range(200):
        L.append("".join(R.choice(WS) + R.choice(["word", "x", "42", "你好", "😀", ""]) for _ in range(R.randint(2, 8))))
    # Special tokens written inside text.
    for s in SPECIALS:
        L += [s, "Hello " + s + " world", s + s, " " + s + " ", "x" + s + "y", s + "\\n" + s]
    for _ in range(150):
        L.append(" ".join(R.choice(SPECIALS + PROSE[:8]) for _ in range(R.randint(2, 5))))
    # Very long words.
    for n in (50, 100, 200, 500, 1000, 3000):
        L += ["a" * n, "ab" * (n // 2), "x" + "0" * n, "é" * (n // 2), "😀" * (n // 10), "中" * (n // 4)]
    L.append("https://example.com/" + "/".join("segment%d" % i for i in range(120)))
    L.append("".join(R.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(2000)) + "==")
    L.append("pneumonoultramicroscopicsilicovolcanoconiosis" * 20)
    # Empty and whitespace-only lines.
    L += [""] * 25
    # Random mixtures.
    for _ in range(450):
        L.append(esc(random_text(R.randint(1, 10))))
    out = [x.encode("utf-8") for x in L]
    # Invalid UTF-8 (raw bytes, never \n, \r or backslash).
    for b in INVALID:
        out += [b, b"abc" + b + b"def", b + b + b, "héllo ".encode() + b + " wörld".encode()]
    for _ in range(40):
        out.append(bytes(R.choice([R.randint(0x80, 0xFF), R.randint(0x20, 0x7E)]) for _ in range(R.randint(1, 20)))
                   .replace(b"\\", b"/"))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    data = lines()
    for b in data:
        assert b"\n" not in b and b"\r" not in b, b
    with open(os.path.join(here, "tokenizer_corpus.txt"), "wb") as f:
        for b in data:
            f.write(b + b"\n")
    print(f"{len(data)} lines")


if __name__ == "__main__":
    main()
