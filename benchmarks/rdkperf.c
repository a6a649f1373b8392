/* rdkperf: a minimal librdkafka load generator for the benchmark runner (benchmarks/clients.py).
 *
 * Built at run time with the system C compiler and linked against the librdkafka that ships
 * inside the confluent-kafka wheel (2.x), so no -dev package is needed: the few declarations
 * below are librdkafka's stable public ABI (rdkafka.h).
 *
 *   rdkperf produce  -b HOST:PORT -t TOPIC -n RECORDS -s SIZE [-P PARTITIONS | -p PARTITION]
 *                    [-d DEADLINE_S] [-X key=value]...
 *   rdkperf consume  -b HOST:PORT -t TOPIC -n RECORDS -g GROUP [-d DEADLINE_S] [-X key=value]...
 *
 * Prints one JSON object on stdout. produce: records are RD_KAFKA_MSG_F_COPY'd from one buffer,
 * round robin over partitions 0..P-1 (or all to -p), time from the first produce() call to the
 * last delivery report. consume: subscribes with a fresh group (auto.offset.reset=earliest) and
 * times from the first record received to the N-th (the group join is not in the figure; it is
 * reported as join_s). Every loop is bounded by the deadline.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_topic_partition_list_s rd_kafka_topic_partition_list_t;
typedef struct rd_kafka_topic_partition_s rd_kafka_topic_partition_t;
typedef struct rd_kafka_message_s {
    int err;
    rd_kafka_topic_t *rkt;
    int32_t partition;
    void *payload;
    size_t len;
    void *key;
    size_t key_len;
    int64_t offset;
    void *_private;
} rd_kafka_message_t;

rd_kafka_conf_t *rd_kafka_conf_new(void);
int rd_kafka_conf_set(rd_kafka_conf_t *, const char *, const char *, char *, size_t);
void rd_kafka_conf_set_dr_msg_cb(rd_kafka_conf_t *,
                                 void (*)(rd_kafka_t *, const rd_kafka_message_t *, void *));
rd_kafka_t *rd_kafka_new(int type, rd_kafka_conf_t *, char *, size_t);
void rd_kafka_destroy(rd_kafka_t *);
rd_kafka_topic_t *rd_kafka_topic_new(rd_kafka_t *, const char *, void *);
void rd_kafka_topic_destroy(rd_kafka_topic_t *);
int rd_kafka_produce(rd_kafka_topic_t *, int32_t, int, void *, size_t, const void *, size_t, void *);
int rd_kafka_last_error(void);
const char *rd_kafka_err2str(int);
int rd_kafka_poll(rd_kafka_t *, int);
int rd_kafka_flush(rd_kafka_t *, int);
int rd_kafka_outq_len(rd_kafka_t *);
int rd_kafka_poll_set_consumer(rd_kafka_t *);
rd_kafka_topic_partition_list_t *rd_kafka_topic_partition_list_new(int);
rd_kafka_topic_partition_t *rd_kafka_topic_partition_list_add(rd_kafka_topic_partition_list_t *,
                                                              const char *, int32_t);
void rd_kafka_topic_partition_list_destroy(rd_kafka_topic_partition_list_t *);
int rd_kafka_subscribe(rd_kafka_t *, const rd_kafka_topic_partition_list_t *);
rd_kafka_queue_t *rd_kafka_queue_get_consumer(rd_kafka_t *);
void rd_kafka_queue_destroy(rd_kafka_queue_t *);
ssize_t rd_kafka_consume_batch_queue(rd_kafka_queue_t *, int, rd_kafka_message_t **, size_t);
void rd_kafka_message_destroy(rd_kafka_message_t *);
int rd_kafka_consumer_close(rd_kafka_t *);

#define QUEUE_FULL (-184)
#define PARTITION_UA (-1)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long delivered, failed;
static int first_error;
static double last_delivery;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    if (m->err) {
        failed++;
        if (!first_error) first_error = m->err;
    } else {
        delivered++;
    }
    last_delivery = now_s();
}

static void die(const char *what, const char *detail) {
    fprintf(stderr, "rdkperf: %s: %s\n", what, detail);
    exit(2);
}

static void set(rd_kafka_conf_t *conf, const char *kv) {
    char key[256], errstr[512];
    const char *eq = strchr(kv, '=');
    if (!eq || (size_t)(eq - kv) >= sizeof(key)) die("bad -X", kv);
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = 0;
    if (rd_kafka_conf_set(conf, key, eq + 1, errstr, sizeof(errstr)) != 0) die(kv, errstr);
}

int main(int argc, char **argv) {
    const char *mode, *brokers = "127.0.0.1:9092", *topic = NULL, *group = "rdkperf";
    long n = 1000000, size = 100;
    int partitions = 0, partition = PARTITION_UA;
    double deadline_s = 120;
    char errstr[512];
    if (argc < 2) die("usage", "rdkperf produce|consume ...");
    mode = argv[1];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) die("missing value for", a);
        i++;
        if (!strcmp(a, "-b")) brokers = v;
        else if (!strcmp(a, "-t")) topic = v;
        else if (!strcmp(a, "-n")) n = atol(v);
        else if (!strcmp(a, "-s")) size = atol(v);
        else if (!strcmp(a, "-P")) partitions = atoi(v);
        else if (!strcmp(a, "-p")) partition = atoi(v);
        else if (!strcmp(a, "-g")) group = v;
        else if (!strcmp(a, "-d")) deadline_s = atof(v);
        else if (!strcmp(a, "-X")) set(conf, v);
        else die("unknown option", a);
    }
    if (!topic) die("usage", "-t TOPIC is required");
    char bs[600];
    snprintf(bs, sizeof(bs), "bootstrap.servers=%s", brokers);
    set(conf, bs);
    double t_start = now_s(), deadline = t_start + deadline_s;

    if (!strcmp(mode, "produce")) {
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        rd_kafka_t *rk = rd_kafka_new(0, conf, errstr, sizeof(errstr));
        if (!rk) die("rd_kafka_new", errstr);
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        char *payload = malloc((size_t)size);
        for (long i = 0; i < size; i++) payload[i] = (char)('a' + i % 26);
        double t0 = now_s();
        long sent = 0;
        int timed_out = 0;
        while (sent < n) {
            int32_t p = partitions > 0 ? (int32_t)(sent % partitions) : partition;
            if (rd_kafka_produce(rkt, p, 2 /* F_COPY */, payload, (size_t)size, NULL, 0, NULL) == -1) {
                int err = rd_kafka_last_error();
                if (err != QUEUE_FULL) die("produce", rd_kafka_err2str(err));
                rd_kafka_poll(rk, 1);
                if (now_s() > deadline) { timed_out = 1; break; }
                continue;
            }
            sent++;
            if ((sent & 1023) == 0) {
                rd_kafka_poll(rk, 0);
                if (now_s() > deadline) { timed_out = 1; break; }
            }
        }
        while (rd_kafka_outq_len(rk) > 0 && delivered + failed < sent) {
            rd_kafka_poll(rk, 5);
            if (now_s() > deadline) { timed_out = 1; break; }
        }
        double t1 = delivered + failed > 0 ? last_delivery : now_s();
        printf("{\"mode\":\"produce\",\"records\":%ld,\"failed\":%ld,\"bytes\":%ld,\"seconds\":%.6f,"
               "\"timed_out\":%d,\"error\":\"%s\"}\n",
               delivered, failed, delivered * size, t1 - t0, timed_out,
               first_error ? rd_kafka_err2str(first_error) : "");
        fflush(stdout);
        rd_kafka_flush(rk, 1000);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        free(payload);
        return failed || timed_out ? 1 : 0;
    }

    if (!strcmp(mode, "consume")) {
        char g[600];
        snprintf(g, sizeof(g), "group.id=%s", group);
        set(conf, g);
        set(conf, "auto.offset.reset=earliest");
        set(conf, "enable.auto.commit=false");
        rd_kafka_t *rk = rd_kafka_new(1, conf, errstr, sizeof(errstr));
        if (!rk) die("rd_kafka_new", errstr);
        rd_kafka_poll_set_consumer(rk);
        rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(topics, topic, PARTITION_UA);
        if (rd_kafka_subscribe(rk, topics)) die("subscribe", topic);
        rd_kafka_topic_partition_list_destroy(topics);
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
        rd_kafka_message_t *batch[10000];
        long got = 0, bytes = 0, errors = 0, in_first = 0;
        double first = 0, last = 0;
        int timed_out = 0;
        while (got < n) {
            ssize_t k = rd_kafka_consume_batch_queue(q, 100, batch, 10000);
            double t = now_s();
            for (ssize_t i = 0; i < k; i++) {
                if (batch[i]->err) {
                    errors++;
                } else {
                    if (!got) first = t;
                    if (first == t) in_first++;
                    got++;
                    bytes += (long)batch[i]->len;
                }
                rd_kafka_message_destroy(batch[i]);
            }
            if (k > 0) last = t;
            if (t > deadline) { timed_out = 1; break; }
        }
        /* the records of the first batch arrived before the clock started: the rate counts
         * the records after it, over the time after it */
        printf("{\"mode\":\"consume\",\"records\":%ld,\"bytes\":%ld,\"seconds\":%.6f,\"join_s\":%.6f,"
               "\"timed_records\":%ld,\"errors\":%ld,\"timed_out\":%d}\n",
               got, bytes, last - first, first ? first - t_start : 0.0, got - in_first, errors,
               timed_out);
        fflush(stdout);
        rd_kafka_queue_destroy(q);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return timed_out ? 1 : 0;
    }
    die("unknown mode", mode);
    return 2;
}
