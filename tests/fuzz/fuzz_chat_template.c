/* fuzz_chat_template.c - compile arbitrary bytes as a chat template; when it
 * compiles, render it with a small fixed context (messages with tool calls,
 * tools, special tokens).  Every input must end in KILN_OK or an error
 * status, within the interpreter's limits, without memory errors or leaks. */
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "tokenizer/chat_template.h"

static const char CONTEXT[] =
    "{\"messages\": ["
    "{\"role\": \"system\", \"content\": \"Be brief.\"},"
    "{\"role\": \"user\", \"content\": \"Hi \\u00e9 <think>x</think>\"},"
    "{\"role\": \"assistant\", \"content\": \"\", \"reasoning_content\": \"r\", \"tool_calls\": ["
    "{\"id\": \"call12345\", \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1.5}}}]},"
    "{\"role\": \"tool\", \"tool_call_id\": \"call12345\", \"content\": \"42\"},"
    "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"t\"}, {\"type\": \"image\"}]}],"
    "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \"d\","
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"number\"}}}}}],"
    "\"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\","
    "\"date_string\": \"01 Jan 2025\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *ctx;
    ctpl *t;
    if (!ctx)
        ctx = json_loads(CONTEXT, 0, NULL);
    if (ctpl_compile((const char *)data, size, &t) != KILN_OK)
        return 0;
    kiln_buf out = {0};
    (void)ctpl_render(t, ctx, &out);
    buf_free(&out);
    ctpl_free(t);
    return 0;
}
