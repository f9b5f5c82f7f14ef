/* An application of the installed libtwinbft, built by tests/install/install.sh
 * with nothing but `pkg-config twinbft`: the header is self-contained, and the
 * library links and runs. */
#include <stdio.h>
#include <string.h>

#include <twinbft/twinbft.h>

int main(void) {
    static tb_client_config cfg; /* zeroed: no members */
    tb_client *c = NULL;
    const uint8_t junk[] = {0xff, 0x01, 0x02};
    cfg.n = 1;
    int rc = tb_cert_verify(&cfg, junk, sizeof junk, 0, NULL);
    if (rc != TB_ERR_INVALID) {
        fprintf(stderr, "consumer: tb_cert_verify on garbage gave %d (%s)\n", rc, tb_strerror(rc));
        return 1;
    }
    /* Pulls the client, its links and the generated wire code into the link. */
    if (tb_client_new(NULL, &cfg, &c) != TB_ERR_INVALID || c != NULL) {
        fprintf(stderr, "consumer: tb_client_new accepted a NULL event_base\n");
        return 1;
    }
    if (strlen(tb_strerror(TB_ERR_TIMEOUT)) == 0) {
        return 1;
    }
    printf("consumer: %s\n", tb_strerror(rc));
    return 0;
}
