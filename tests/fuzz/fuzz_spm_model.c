/* fuzz_spm_model.c - libFuzzer target: spm_load_model_bytes on arbitrary
 * bytes, then (when the model loads) encode and decode a fixed text that
 * mixes ASCII, spaces, multi-byte characters and invalid UTF-8.  Seeds:
 * tests/fuzz/corpus/spm_model/ (small trained and hand-made models). */
#include "base/buf.h"
#include "tokenizer/spm.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static const char TEXT[] = "Hello  w\xC3\xB6rld,\tthe <s> <u> ab\xE2\x96\x81 \xF0\x9F\x98\x80 \xff\xfe 12345";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    spm_tok *t = NULL;
    if (spm_load_model_bytes(data, size, &t) != KILN_OK)
        return 0;
    kiln_ids ids = {0};
    kiln_buf out = {0};
    if (spm_encode(t, TEXT, sizeof TEXT - 1, true, &ids) == KILN_OK) {
        spm_decode(t, ids.data, ids.len, true, &out);
        buf_clear(&out);
        spm_decode(t, ids.data, ids.len, false, &out);
    }
    for (int32_t id = 0; id < 8 && id < spm_vocab_size(t); id++) {
        size_t len;
        const char *p = spm_piece(t, id, &len);
        if (p)
            spm_piece_id(t, p, len);
    }
    ids_free(&ids);
    buf_free(&out);
    spm_free(t);
    return 0;
}
