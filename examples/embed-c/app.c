/*
 * embed-c: a C program that runs a Flint artifact through the runtime's C API.
 *
 *     make run ARTIFACT=model.tgx
 *
 * It prints the model's signature, fills every input with a deterministic ramp (symbolic
 * dims at 2, or their bound if that is smaller), runs the model into buffers it owns, prints
 * the start of each output, and checks one error path: an input of the wrong shape must come
 * back as FLINT_ERROR_INPUT with a message naming the input.
 */
#include <flint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                              \
    do {                                                                         \
        FlintStatus status_ = (call);                                            \
        if (status_ != FLINT_OK) {                                               \
            fprintf(stderr, "%s failed (%d): %s\n", #call, status_, flint_last_error()); \
            return 1;                                                            \
        }                                                                        \
    } while (0)

static size_t dtype_size(FlintDType d) {
    switch (d) {
    case FLINT_F32: case FLINT_I32: return 4;
    case FLINT_F16: case FLINT_BF16: return 2;
    case FLINT_I64: return 8;
    default: return 1;
    }
}

static const char *dtype_name(FlintDType d) {
    static const char *names[] = {"f32", "f16", "bf16", "i32", "i64", "bool"};
    return names[d];
}

/* One input, ready to pass: its shape and its bytes. */
typedef struct {
    size_t shape[FLINT_MAX_RANK];
    unsigned char *data;
    size_t bytes;
} Buffer;

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.tgx\n", argv[0]);
        return 2;
    }
    printf("flint %s\n", flint_version());
    FlintModel *model = NULL;
    CHECK(flint_model_load(argv[1], &model));

    size_t n_inputs = 0, n_outputs = 0;
    CHECK(flint_model_count(model, FLINT_INPUT, &n_inputs));
    CHECK(flint_model_count(model, FLINT_OUTPUT, &n_outputs));
    FlintInput *inputs = calloc(n_inputs, sizeof *inputs);
    Buffer *buffers = calloc(n_inputs, sizeof *buffers);
    for (size_t i = 0; i < n_inputs; i++) {
        FlintTensorInfo info;
        CHECK(flint_model_info(model, FLINT_INPUT, i, &info));
        size_t count = 1;
        printf("input %s: %s[", info.name, dtype_name(info.dtype));
        for (size_t a = 0; a < info.rank; a++) {
            size_t n = info.dims[a].symbol ? (info.dims[a].bound < 2 ? info.dims[a].bound : 2) : info.dims[a].size;
            if (info.dims[a].symbol)
                printf("%s%s<=%llu", a ? ", " : "", info.dims[a].symbol, (unsigned long long)info.dims[a].bound);
            else
                printf("%s%llu", a ? ", " : "", (unsigned long long)n);
            buffers[i].shape[a] = n;
            count *= n;
        }
        printf("]\n");
        buffers[i].bytes = count * dtype_size(info.dtype);
        buffers[i].data = calloc(buffers[i].bytes ? buffers[i].bytes : 1, 1);
        if (info.dtype == FLINT_F32)
            for (size_t k = 0; k < count; k++)
                ((float *)buffers[i].data)[k] = (float)((int)(k % 17) - 8) * 0.125f;
        inputs[i] = (FlintInput){info.name, info.dtype, buffers[i].shape, info.rank, buffers[i].data, buffers[i].bytes};
    }

    FlintOutput *outputs = calloc(n_outputs, sizeof *outputs);
    for (size_t i = 0; i < n_outputs; i++) {
        FlintTensorInfo info;
        CHECK(flint_model_info(model, FLINT_OUTPUT, i, &info));
        size_t most = dtype_size(info.dtype);
        for (size_t a = 0; a < info.rank; a++)
            most *= info.dims[a].bound; /* the largest the output can be */
        outputs[i].name = info.name;
        outputs[i].capacity = most;
        outputs[i].data = malloc(most ? most : 1);
    }

    FlintSession *session = NULL;
    CHECK(flint_session_new(model, &session));
    CHECK(flint_session_run(session, inputs, n_inputs, outputs, n_outputs));
    for (size_t i = 0; i < n_outputs; i++) {
        printf("output %s: [", outputs[i].name);
        for (size_t a = 0; a < outputs[i].rank; a++)
            printf("%s%zu", a ? ", " : "", outputs[i].shape[a]);
        printf("]");
        size_t shown = outputs[i].bytes / 4 < 6 ? outputs[i].bytes / 4 : 6;
        for (size_t k = 0; k < shown; k++)
            printf(" %.6f", ((float *)outputs[i].data)[k]);
        printf("\n");
    }

    /* The error path: the first input with one more element on its last axis. */
    if (n_inputs > 0 && inputs[0].rank > 0) {
        size_t wrong[FLINT_MAX_RANK];
        memcpy(wrong, buffers[0].shape, sizeof wrong);
        wrong[inputs[0].rank - 1] += 1;
        FlintInput bad = inputs[0];
        bad.shape = wrong;
        bad.bytes = buffers[0].bytes / buffers[0].shape[bad.rank - 1] * wrong[bad.rank - 1];
        void *bigger = calloc(bad.bytes, 1);
        bad.data = bigger;
        FlintStatus status = flint_session_run(session, &bad, 1, outputs, n_outputs);
        free(bigger);
        const char *message = flint_last_error();
        printf("wrong shape: status %d: %s\n", status, message);
        if (status != FLINT_ERROR_INPUT || strstr(message, inputs[0].name) == NULL) {
            fprintf(stderr, "expected FLINT_ERROR_INPUT naming `%s`\n", inputs[0].name);
            return 1;
        }
    }

    CHECK(flint_session_free(session));
    CHECK(flint_model_free(model));
    for (size_t i = 0; i < n_inputs; i++)
        free(buffers[i].data);
    for (size_t i = 0; i < n_outputs; i++)
        free(outputs[i].data);
    free(inputs);
    free(buffers);
    free(outputs);
    printf("ok\n");
    return 0;
}
